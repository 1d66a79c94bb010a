"""Whether a catalogue model's chat template can be trained, checked when the catalogue loads.

ftapi trains assistant turns only, with its own mask (trainer/data/masking.py), which needs a
prefix-consistent template that ends assistant turns with an end-of-turn token. A model whose
template fails that is still listed and served, but job creation refuses it (400, param `model`)
with the reason, instead of a trainer failing after dispatch. A template that fails only with a
system message (Gemma's refuses one) is trainable on data without one: file validation fails the
jobs whose files have system messages, before any trainer starts.

Checked: local model folders when the catalogue loads, and models imported into storage when they
are imported (`ftapi models import` records the check in the stored manifest, which every replica
reads). Not checked here (the trainer checks them when it starts): hub ids, which are not on this
machine until a trainer downloads them, folders imported before the check was recorded, and the
built-in tiny-chat (ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from trainer.data.masking import UntrainableTemplate, check_template
from trainer.data.templates import read_model_template

log = structlog.get_logger()


@dataclass(frozen=True)
class TemplateCheck:
    problem: str | None = None  # why jobs on this model are refused; None: trainable (or not checked)
    system_problem: str | None = None  # why examples with a system message cannot be trained

    def to_manifest(self) -> dict[str, str | None]:
        return {"problem": self.problem, "system_problem": self.system_problem}

    @classmethod
    def from_manifest(cls, recorded: object) -> TemplateCheck:
        """The check an import recorded; an older manifest without one reads as not checked."""
        if not isinstance(recorded, dict):
            return cls()
        problem, system_problem = recorded.get("problem"), recorded.get("system_problem")
        return cls(
            problem=problem if isinstance(problem, str) else None,
            system_problem=system_problem if isinstance(system_problem, str) else None,
        )


def check_source(model_id: str, source: str) -> TemplateCheck:
    folder = Path(source).expanduser()
    if source.startswith("builtin:") or not folder.is_dir():
        return TemplateCheck()
    try:
        template = read_model_template(folder)
    except (OSError, ValueError) as exc:
        return _refused(model_id, f"its tokenizer files cannot be read ({exc})")
    if template is None:
        return _refused(model_id, "it has no chat template")
    try:
        report = check_template(template.renderer(), template.stop_tokens)
    except UntrainableTemplate as exc:
        return _refused(model_id, str(exc))
    except Exception as exc:  # a template jinja cannot even compile
        return _refused(model_id, f"its chat template does not load ({exc})")
    return TemplateCheck(system_problem=report.system_problem)


def _refused(model_id: str, reason: str) -> TemplateCheck:
    log.warning("catalogue.untrainable_template", model=model_id, reason=reason)
    return TemplateCheck(problem=reason)
