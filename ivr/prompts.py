"""Every sentence a caller, operator or SMS reader gets, from prompts/<lang>/*.j2."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jinja2

from ivr.lang import LANGS

log = logging.getLogger(__name__)

FALLBACK_LANG = "ja"


class PromptError(RuntimeError):
    """A template that is missing or does not compile."""


class Prompts:
    """Compiled templates, loaded at start so no request compiles one.

    autoescape is off on purpose: TwiML is built by twilio.twiml, which escapes XML itself,
    and SMS bodies are plain text.
    """

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.root)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=False,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.templates: dict[tuple[str, str], jinja2.Template] = {}
        for lang in LANGS:
            for path in sorted((self.root / lang).glob("*.j2")):
                try:
                    self.templates[(path.stem, lang)] = self.env.get_template(f"{lang}/{path.name}")
                except jinja2.TemplateSyntaxError as e:
                    raise PromptError(f"{path}:{e.lineno}: {e.message}") from None
        missing = sorted(name for name, lang in self.templates
                         if lang == FALLBACK_LANG and (name, "en") not in self.templates)
        if missing:
            log.warning("prompts without an English version, Japanese is used: %s", missing)

    def names(self) -> list[str]:
        return sorted({name for name, _ in self.templates})

    def render(self, name: str, lang: str, /, *, keep_lines: bool = False, **ctx: Any) -> str:
        """Render `name` in `lang`, falling back to Japanese.

        Speech folds the template's line breaks away (Japanese joins lines with nothing,
        English with a space); SMS keeps them with `keep_lines`.
        """
        template, text_lang = self.templates.get((name, lang)), lang
        if template is None:
            template, text_lang = self.templates.get((name, FALLBACK_LANG)), FALLBACK_LANG
            if template is None:
                raise PromptError(f"no prompt {name!r} in {self.root}")
            log.warning("prompt %s has no %s version; using %s", name, lang, FALLBACK_LANG)
        lines = [line.strip() for line in template.render(lang=lang, **ctx).splitlines()]
        if keep_lines:
            return "\n".join(line for line in lines if line)
        return ("" if text_lang == "ja" else " ").join(line for line in lines if line)


def load_prompts(directory: str | Path) -> Prompts:
    return Prompts(directory)
