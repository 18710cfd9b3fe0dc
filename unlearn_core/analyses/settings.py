"""User settings of the analyses: `--set relearning.lr=2e-5` (repeatable) and settings files, checked against each
analysis's config class before anything runs.

A setting replaces a field of the analysis's default config (`SPEC.default_config`); the config's own validation
runs on the result, so a value out of range fails here with the config's message. Settings are part of the
resolved config, hence of the results-store key (run.jobs.plan) and of report.json's "settings".
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

from unlearn_core.analyses import registry


def _fields(cfg) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cfg)}


def _coerce(text: str, current, annotation) -> object:
    """The value of `text` in the type of the field: JSON first (numbers, true/false/null, lists), else the raw
    string; lists become tuples where the field holds a tuple."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        lowered = text.strip().lower()
        value = {"true": True, "false": False, "none": None}.get(lowered, text)
    if isinstance(value, list) and (isinstance(current, tuple) or "tuple" in str(annotation)):
        value = tuple(value)
    if isinstance(value, int) and not isinstance(value, bool) and (
            isinstance(current, float) or "float" in str(annotation)):
        value = float(value)
    return value


def parse_set(text: str) -> tuple[str, str, str]:
    """'analysis.field=value' -> (analysis, field, raw value)."""
    key, sep, value = text.partition("=")
    analysis, dot, field = key.strip().partition(".")
    if not sep or not dot or not analysis or not field:
        raise ValueError(f"--set expects ANALYSIS.FIELD=VALUE (e.g. relearning.lr=2e-5), got {text!r}")
    return analysis, field, value.strip()


def read_settings_file(path: str | Path) -> dict[str, dict[str, object]]:
    """A JSON (or TOML) file {analysis: {field: value}}; the same shape report.json's "settings" has, so the settings
    of an earlier audit can be given back as they were recorded."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"settings file {p}: cannot read it ({exc.strerror or exc})") from exc
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"settings file {p}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} ({exc})") \
            from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"settings file {p}: expected {{analysis: {{field: value}}}}")
    return data


def build_configs(sets: list[str] | None = None, files: list[str | Path] | None = None,
                  base: dict[str, object] | None = None) -> dict[str, object]:
    """Configs for the analyses the user set anything for: `base` (configs the caller built, e.g. the scorecard's
    from its own flags) updated with the files' settings, then with `sets` (later wins). Unknown analyses or fields,
    and values the config rejects, raise ValueError naming what is allowed."""
    wanted: dict[str, dict[str, object]] = {}
    for f in files or ():
        for analysis, fields in read_settings_file(f).items():
            wanted.setdefault(analysis, {}).update(fields)
    for text in sets or ():
        analysis, field, raw = parse_set(text)
        wanted.setdefault(analysis, {})[field] = ("__raw__", raw)
    out = dict(base or {})
    for analysis, fields in wanted.items():
        spec = registry.get_spec(analysis)
        cfg = out.get(analysis) or spec.default_config()
        known = _fields(cfg)
        hints = typing.get_type_hints(type(cfg))
        changes = {}
        for field, value in fields.items():
            if field not in known:
                raise ValueError(f"{analysis} has no setting {field!r}; its settings: {', '.join(sorted(known))}")
            if isinstance(value, tuple) and len(value) == 2 and value[0] == "__raw__":
                value = _coerce(value[1], getattr(cfg, field), hints.get(field))
            elif isinstance(value, list) and isinstance(getattr(cfg, field), tuple):
                value = tuple(value)
            changes[field] = value
        try:
            out[analysis] = dataclasses.replace(cfg, **changes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{analysis} settings {changes}: {exc}") from exc
    return out


def as_record(config) -> dict[str, object]:
    """A config as plain JSON values (what report.json records and a settings file gives back)."""
    def plain(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {k: plain(x) for k, x in dataclasses.asdict(v).items()}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(config)
