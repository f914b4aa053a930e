"""ivr/person.py and ivr/access.py: people, roles, passwords, tokens, sign-in limits."""

from __future__ import annotations

import pytest

from ivr import access, keys, person
from ivr.access import BOOTSTRAP, Actor

PASSWORD = "correct horse battery"


def make(svc, login="yamada", role="supervisor", **kw):
    return person.create(svc, login=login, name="山田太郎", role=role, password=PASSWORD,
                         by="bootstrap", **kw)


def test_create_keeps_only_an_argon2_hash_and_reads_back(svc, redis):
    p = make(svc, phone="+819012345678")
    assert (p.login, p.role, p.phone, p.active, p.session_epoch, p.created_by) == (
        "yamada", "supervisor", "+819012345678", True, 0, "bootstrap")
    stored = redis.hget(keys.person(p.id), "password_hash")
    assert stored.startswith("$argon2id$") and PASSWORD not in str(redis.hgetall(keys.person(p.id)))
    assert person.get(svc, p.id) == p == person.by_login(svc, "YAMADA")
    assert person.list_people(svc) == [p]
    assert "password_hash" not in p.to_json()


def test_logins_are_unique_case_insensitively(svc):
    make(svc)
    with pytest.raises(person.LoginTaken):
        make(svc, login="Yamada")
    assert len(person.list_people(svc)) == 1


def test_authenticate_right_and_wrong(svc):
    p = make(svc)
    assert person.authenticate(svc, "yamada", PASSWORD, client="10.0.0.1") == p
    assert person.authenticate(svc, "yamada", "wrong", client="10.0.0.1") is None
    assert person.authenticate(svc, "nobody", PASSWORD, client="10.0.0.1") is None
    person.update(svc, p.id, {"active": False}, by="admin1")
    assert person.authenticate(svc, "yamada", PASSWORD, client="10.0.0.1") is None


def test_failed_signins_lock_the_login_then_the_window_passes(svc, clock):
    make(svc)
    for i in range(person.SIGNIN_LIMIT_LOGIN):
        assert person.authenticate(svc, "yamada", "wrong", client=f"10.0.0.{i}") is None
    assert person.signin_locked(svc, "yamada", "10.9.9.9")
    # even the right password is refused while locked, from any address
    assert person.authenticate(svc, "yamada", PASSWORD, client="10.9.9.9") is None
    assert not person.signin_locked(svc, "other", "10.9.9.9")
    clock.tick(keys.SIGNIN_WINDOW - 1)  # the clock fixture starts on a window's first second
    assert person.signin_locked(svc, "yamada", "10.9.9.9")
    clock.tick(1)
    assert not person.signin_locked(svc, "yamada", "10.9.9.9")
    assert person.authenticate(svc, "yamada", PASSWORD, client="10.9.9.9") is not None


def test_failed_signins_lock_the_client_address_across_logins(svc, redis):
    make(svc)
    for i in range(person.SIGNIN_LIMIT_CLIENT):
        person.authenticate(svc, f"guess{i}", "wrong", client="192.0.2.7")
    assert person.signin_locked(svc, "yamada", "192.0.2.7")
    assert person.authenticate(svc, "yamada", PASSWORD, client="192.0.2.7") is None
    assert person.authenticate(svc, "yamada", PASSWORD, client="192.0.2.8") is not None
    ttls = [redis.ttl(k) for k in redis.keys(keys.auth_failures("*", "*", "*"))]
    assert ttls and all(0 < t <= 2 * keys.SIGNIN_WINDOW for t in ttls)


def test_tokens_are_stored_hashed_shown_once_and_revocable(svc, redis):
    p = make(svc, role="operator")
    token_id, plaintext = person.issue_token(svc, p.id, by="admin1")
    assert plaintext.startswith("ivr_" + token_id + "_")
    assert not any(plaintext in str(redis.dump(k)) for k in redis.keys("*"))
    assert person.whoami(svc, plaintext, "boot") == Actor(p.id, "yamada", "operator")
    assert [t["id"] for t in person.tokens_of(svc, p.id)] == [token_id]
    assert person.revoke_token(svc, token_id, by="admin1") is True
    assert person.whoami(svc, plaintext, "boot") is None
    assert person.revoke_token(svc, token_id, by="admin1") is False
    assert person.tokens_of(svc, p.id) == []


def test_bootstrap_token_is_the_bootstrap_admin(svc):
    assert person.whoami(svc, "boot-secret", "boot-secret") == BOOTSTRAP
    assert BOOTSTRAP.login == "bootstrap" and BOOTSTRAP.role == "admin"
    assert person.whoami(svc, "boot-secret", "") is None
    assert person.whoami(svc, "", "") is None


def test_deactivation_revokes_tokens_and_sessions_at_once(svc, redis):
    p = make(svc)
    _, t1 = person.issue_token(svc, p.id, by="bootstrap")
    _, t2 = person.issue_token(svc, p.id, by="bootstrap")
    assert person.session_person(svc, p.id, 0) == p
    changed = person.update(svc, p.id, {"active": False}, by="admin1")
    assert changed.session_epoch == 1 and not changed.active
    assert person.whoami(svc, t1, "x") is None and person.whoami(svc, t2, "x") is None
    assert person.session_person(svc, p.id, 0) is None
    assert redis.keys(keys.token("*")) == [] and redis.keys(keys.token_ref("*")) == []
    with pytest.raises(person.NotFound):
        person.issue_token(svc, p.id, by="admin1")


def test_password_or_role_change_ends_sessions_but_name_does_not(svc):
    p = make(svc)
    assert person.update(svc, p.id, {"name": "山田"}, by="a").session_epoch == 0
    assert person.update(svc, p.id, {"role": "operator"}, by="a").session_epoch == 1
    assert person.update(svc, p.id, {"password": "another long one"}, by="a").session_epoch == 2
    assert person.authenticate(svc, "yamada", "another long one", client="c") is not None


def test_a_role_change_applies_to_existing_tokens(svc):
    p = make(svc)
    _, token = person.issue_token(svc, p.id, by="a")
    person.update(svc, p.id, {"role": "operator"}, by="a")
    assert person.whoami(svc, token, "x").role == "operator"


def test_login_change_moves_the_index(svc):
    p = make(svc)
    _, token = person.issue_token(svc, p.id, by="a")
    make(svc, login="suzuki")
    with pytest.raises(person.LoginTaken):
        person.update(svc, p.id, {"login": "suzuki"}, by="a")
    person.update(svc, p.id, {"login": "yamada2"}, by="a")
    assert person.by_login(svc, "yamada") is None
    assert person.by_login(svc, "yamada2").id == p.id
    assert person.whoami(svc, token, "x").login == "yamada2"


def test_bad_tokens_lock_the_client_address(svc):
    p = make(svc)
    _, token = person.issue_token(svc, p.id, by="a")
    for i in range(person.SIGNIN_LIMIT_CLIENT):
        assert person.whoami(svc, f"ivr_guess{i}", "boot", client="198.51.100.1") is None
    assert person.token_locked(svc, "198.51.100.1")
    assert person.whoami(svc, token, "boot", client="198.51.100.1") is None
    assert person.whoami(svc, token, "boot", client="198.51.100.2") is not None


def test_bad_secrets_for_a_real_token_id_lock_that_persons_tokens(svc):
    p = make(svc)
    token_id, token = person.issue_token(svc, p.id, by="a")
    for i in range(person.TOKEN_LIMIT_PERSON):
        forged = f"ivr_{token_id}_forged{i}"
        assert person.whoami(svc, forged, "boot", client=f"203.0.113.{i}") is None
    assert person.whoami(svc, token, "boot", client="203.0.113.200") is None


@pytest.mark.parametrize("role,action,ok", [
    ("operator", "call.read", True), ("operator", "call.escalate", True),
    ("operator", "outcome.read_own", True), ("operator", "incident.write", False),
    ("operator", "people.admin", False), ("supervisor", "incident.write", True),
    ("supervisor", "customer.write", True), ("supervisor", "people.admin", False),
    ("supervisor", "roster.write", False), ("admin", "people.admin", True),
    ("admin", "token.admin", True), ("nobody", "call.read", False),
    ("admin", "no.such.action", False),
])
def test_rights(role, action, ok):
    assert access.allowed(role, action) is ok


def test_long_passwords_fail_without_hashing(svc):
    make(svc)
    assert person.authenticate(svc, "yamada", "x" * (person.PASSWORD_MAX + 1),
                               client="c") is None


@pytest.mark.parametrize("module", ["ivr/person.py", "ivr/access.py", "ivr/schemas.py"])
def test_people_modules_take_plain_values_never_flask(module):
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[1] / module).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [m for m in imported if m.split(".")[0] in ("flask", "werkzeug")]
