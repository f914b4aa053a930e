"""Which packages the wheel holds; everything else about the project is in pyproject.toml.

Every package under ivr/ and worker/ is found on disk, so a new subpackage ships without a
list to update. The top-level flows/ and prompts/ (PRODUCT.md keeps them there, for ops to
edit) ship inside the package as ivr/defaults/flows and ivr/defaults/prompts, where
ivr.config finds them in an installed copy. See docs/decisions.md, "Packaging".
"""

from setuptools import find_packages, setup

DATA_PACKAGES = {"ivr.defaults.flows": "flows", "ivr.defaults.prompts": "prompts"}

setup(
    packages=find_packages(include=["ivr", "ivr.*", "worker", "worker.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
)
