"""``${NAME}`` references in config values (:func:`zhizao.config.expand_env`): what a problem says."""

from __future__ import annotations

from zhizao.config import expand_env


def test_a_malformed_reference_is_named_by_key_and_position_without_echoing_the_value() -> None:
    """A password written as a literal that happens to hold ``${`` must not be echoed into logs."""
    doc, problems = expand_env({"broker": {"password": "s3cr${et word"}}, env={})
    assert doc == {"broker": {"password": "s3cr${et word"}}
    assert len(problems) == 1
    key, message = problems[0]
    assert key == "broker.password"
    assert "character 5" in message and "$${" in message
    assert "et word" not in message and "s3cr" not in message


def test_references_are_replaced_and_a_missing_variable_is_named() -> None:
    doc, problems = expand_env({"a": ["x${HOST}y", "$${HOST}"], "b": "${NOPE}"}, env={"HOST": "h1"})
    assert doc == {"a": ["xh1y", "${HOST}"], "b": "${NOPE}"}
    assert problems == [("b", "environment variable NOPE is not set (referenced as ${NOPE})")]
