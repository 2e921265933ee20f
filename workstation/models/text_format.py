"""How a (prompt, response) pair becomes what a tokens model's tokenizer encodes.

The format is chosen at ``model add`` (``--text-format``) and kept in the
manifest's ``input`` dict, so every scorer (audits, probes, the oracle,
scale-run bundles, release checks) feeds the model the same way:

* ``pair`` (the default): prompt and response as a tokenizer pair
  (``[CLS] prompt [SEP] response [SEP]`` for BERT); the response alone when
  there is no prompt.
* ``response``: the response alone; the prompt is ignored.
* ``chat-template``: the model's Jinja chat template (from its
  ``tokenizer_config.json``) rendered as ``transformers``'
  ``apply_chat_template`` does, with the prompt as the user turn and the
  response as the assistant turn, no generation prompt; the rendered text is
  encoded without adding special tokens (the template writes its own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from workstation.errors import InputError, WorkstationError
from workstation.hashing import sha256_bytes

TEXT_FORMATS = ("pair", "response", "chat-template")
DEFAULT_TEXT_FORMAT = "pair"
# The keys of tokenizer_config.json that apply_chat_template passes to the
# template (as the tokenizer's special_tokens_map).
_SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                       "cls_token", "mask_token")
_SAMPLE = ("What is the capital of France?", "Paris.")


@dataclass(frozen=True)
class TextFormat:
    """A model's text format, as stored in its manifest's ``input`` dict."""

    kind: str = DEFAULT_TEXT_FORMAT
    chat_template: str | None = None
    special_tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_input(cls, info: dict[str, Any]) -> "TextFormat":
        """The format of a manifest's ``input`` (old manifests: ``pair``)."""
        return cls(info.get("text_format", DEFAULT_TEXT_FORMAT), info.get("chat_template"),
                   dict(info.get("special_tokens") or {}))

    def to_input(self) -> dict[str, Any]:
        """The manifest fields: ``text_format``, and for chat templates the
        template text, its sha256 and the special tokens it is rendered with."""
        out: dict[str, Any] = {"text_format": self.kind}
        if self.kind == "chat-template":
            out.update(chat_template=self.chat_template,
                       chat_template_sha256=sha256_bytes(self.chat_template.encode("utf-8")),
                       special_tokens=self.special_tokens)
        return out

    @property
    def add_special_tokens(self) -> bool:
        """Whether the tokenizer adds its own special tokens (a template writes them)."""
        return self.kind != "chat-template"

    def items(self, prompts: Sequence[str | None],
              responses: Sequence[str | None]) -> list[Any]:
        """What the tokenizer encodes for each (prompt, response): a text or a pair."""
        if self.kind == "response":
            return [r or "" for r in responses]
        if self.kind == "chat-template":
            template = _compiled(self.chat_template)
            return [render_chat(template, p or "", r or "", self.special_tokens)
                    for p, r in zip(prompts, responses)]
        return [(p, r or "") if p else (r or "") for p, r in zip(prompts, responses)]


def render_chat(template: Any, prompt: str, response: str,
                special_tokens: dict[str, str]) -> str:
    """One conversation (user prompt, assistant response) through a compiled template."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return template.render(messages=messages, add_generation_prompt=False, **special_tokens)


@lru_cache(maxsize=16)
def _compiled(template: str) -> Any:
    """The template compiled in a sandbox with the globals and options
    ``transformers`` gives chat templates (trim_blocks, lstrip_blocks,
    loopcontrols, ``raise_exception``, a JSON ``tojson``, ``strftime_now``)."""
    import datetime

    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(template)


# -- choosing a format at registration ------------------------------------------------

def chat_template_config(model_path: str | Path,
                         given: str | Path | None = None) -> Path:
    """Where the chat template of the model at ``model_path`` comes from:
    ``given`` (a tokenizer_config.json), else the one beside the model file."""
    return Path(given) if given is not None else Path(model_path).with_name(
        "tokenizer_config.json")


def text_format_for(kind: str | None, config_path: Path | None,
                    source: str = "<model>") -> TextFormat:
    """The format ``model add`` asked for; ``chat-template`` reads the template
    from ``config_path`` (a tokenizer_config.json) and proves it renders."""
    kind = kind or DEFAULT_TEXT_FORMAT
    if kind not in TEXT_FORMATS:
        raise WorkstationError(f"unknown text format '{kind}': expected one of "
                               f"{', '.join(TEXT_FORMATS)}")
    if kind != "chat-template":
        return TextFormat(kind)
    if config_path is None or not config_path.exists():
        raise InputError(source, "--text-format chat-template needs the model's "
                                 "tokenizer_config.json (none found beside the file; pass "
                                 "--tokenizer-config)")
    return chat_format_from_config(config_path.read_text(encoding="utf-8"), str(config_path))


def chat_format_from_config(text: str, source: str = "tokenizer_config.json") -> TextFormat:
    """The chat-template format of a tokenizer_config.json, or a one-line refusal."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise InputError(source, f"not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(source, "not a tokenizer_config.json (expected a JSON object)")
    template = _template_text(config.get("chat_template"), source)
    specials = {k: _token_text(config[k]) for k in _SPECIAL_TOKEN_KEYS
                if _token_text(config.get(k)) is not None}
    fmt = TextFormat("chat-template", template, specials)
    _check_renders(fmt, source)
    return fmt


def _template_text(value: Any, source: str) -> str:
    """A template string; a list of named templates gives its ``default``."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    if not isinstance(value, str) or not value.strip():
        raise InputError(source, "has no chat_template (or no 'default' one): cannot use "
                                 "--text-format chat-template")
    return value


def _token_text(value: Any) -> str | None:
    """A special token as a string (tokenizer configs may store an AddedToken dict)."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _check_renders(fmt: TextFormat, source: str) -> None:
    import jinja2

    try:
        rendered = fmt.items([_SAMPLE[0]], [_SAMPLE[1]])[0]
    except (jinja2.exceptions.TemplateError, TypeError, ValueError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(source, f"its chat_template cannot render a user/assistant "
                                 f"conversation ({message[:200]})") from None
    if _SAMPLE[1] not in rendered:
        raise InputError(source, "its chat_template drops the assistant's response "
                                 "(a generation template?): cannot score responses with it")
