"""Knowledge distillation during compression fine-tuning: the float model teaches its pruned,
quantized copy (Hinton et al., 2015; Distiller's ``KnowledgeDistillationPolicy``).

The loss is CTC plus ``weight * T**2 *`` the mean, over the frames inside each utterance, of
the KL divergence from the teacher's softened output distribution to the student's. Matching
frame by frame suits CTC here: the student starts as a copy of the teacher, so both emit their
spikes on the same frames, and the teacher's soft posteriors carry what pruning takes away
(which wrong letters are nearly right, where the blanks are sure).
"""

from __future__ import annotations

import torch
from torch import nn

from asr.train.module import CTCModule


def frame_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
             lengths: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T**2 * KL(softmax(teacher / T) || softmax(student / T))`` averaged over the valid
    frames of a ``(B, T, V)`` batch; frames at or past ``lengths`` count for nothing. The
    ``T**2`` keeps the gradient's size independent of ``T`` (Hinton et al.)."""
    t = (teacher_logits.float() / temperature).log_softmax(-1)
    s = (student_logits.float() / temperature).log_softmax(-1)
    per_frame = (t.exp() * (t - s)).sum(-1)
    valid = (torch.arange(per_frame.shape[1], device=lengths.device)[None, :]
             < lengths[:, None]).to(per_frame.dtype)
    return (per_frame * valid).sum() / valid.sum().clamp_min(1) * temperature ** 2


class DistillingCTCModule(CTCModule):
    """:class:`CTCModule` whose training loss adds :func:`frame_kl` against a frozen teacher.

    The teacher is attached after construction (:meth:`attach_teacher`) and kept out of the
    module's children, so it is neither in the checkpoints (it is the ``model=`` checkpoint,
    read again on resume) nor trained, nor switched to training mode by Lightning. Validation
    scores the student alone with the plain CTC loss, as without distillation.
    """

    teacher: nn.Module | None = None

    def attach_teacher(self, teacher: nn.Module, weight: float, temperature: float) -> None:
        # A plain attribute, not a submodule: nn.Module.__setattr__ would register it.
        object.__setattr__(self, "teacher", teacher.eval().requires_grad_(False))
        self.distill_weight = weight
        self.distill_temperature = temperature

    def on_fit_start(self) -> None:
        if self.teacher is None:
            raise RuntimeError("DistillingCTCModule: attach_teacher() before fitting")
        self.teacher.to(self.device)

    def _training_loss(self, batch: dict) -> torch.Tensor:
        ctc, logits, out_lengths = self._loss(batch)
        with torch.no_grad():
            teacher_logits = self.teacher(batch["features"], batch["feature_lengths"])
        kd = frame_kl(teacher_logits, logits, out_lengths, self.distill_temperature)
        size = len(batch["utt_ids"])
        self.log("train_ctc_loss", ctc, batch_size=size)
        self.log("train_kd_loss", kd, batch_size=size)
        return ctc + self.distill_weight * kd
