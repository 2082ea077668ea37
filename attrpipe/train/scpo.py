"""ScPO's loss (Self-Consistency Preference Optimization, Prasad et al., arXiv 2411.04109) on TRL's ``DPOTrainer``.

Per pair i (attrpipe.objectives: chosen = a consensus chain, rejected = a least-voted one, weight w_i):

    loss_i = w_i * ( -log sigmoid(beta * ((log pi(y+) - log pi_ref(y+)) - (log pi(y-) - log pi_ref(y-))))
                     + alpha * NLL(y+) / |y+| )

and the loss of a batch is the mean of loss_i. log pi(y) is summed over the completion's tokens (as TRL's DPO);
NLL(y+) / |y+| is the chosen chain's mean negative log-likelihood per token, normalised per example (IRPO's form).
beta is ``dpo.beta``, alpha ``dpo.nll_weight``.

:class:`ScPOTrainer` is TRL 1.16's ``DPOTrainer`` with ``_compute_loss`` (the per-batch loss) replaced: the same
policy forward (TRL's fused LM head, per-token log-probs of the completions), TRL's own ``compute_ref_log_probs`` for
the reference (the base with the adapter disabled, or TRL's frozen ``ref`` adapter), and TRL's metrics
(``rewards/*``, ``logps/*``, ``entropy``, ``mean_token_accuracy``) plus ``scpo/weight`` (the batch's mean weight) and
``scpo/nll`` (the chosen chains' mean NLL per token). TRL's vision collator keeps only the columns it knows, so the
trainer wraps it (:class:`WeightCollator`): each example's ``weight`` comes out as a float tensor in the batch.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from trl import DPOTrainer

__all__ = ["scpo_loss", "WeightCollator", "ScPOTrainer", "WEIGHT_METRIC"]

WEIGHT_METRIC = "scpo/weight"


def scpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
              ref_rejected_logps: torch.Tensor, chosen_lengths: torch.Tensor, weights: torch.Tensor, *, beta: float,
              nll_weight: float, dpo_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(mean loss, per-example terms ``dpo``, ``nll``, ``loss``) from summed completion log-probs (shape [B] each),
    the chosen completions' token counts and the pairs' weights."""
    margin = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    dpo = -F.logsigmoid(beta * margin)
    nll = -chosen_logps / chosen_lengths.to(chosen_logps.dtype).clamp(min=1.0)
    per_example = weights.to(chosen_logps.dtype) * (dpo_weight * dpo + nll_weight * nll)
    return per_example.mean(), {"dpo": dpo, "nll": nll, "loss": per_example}


class WeightCollator:
    """A preference collator that also returns each example's ``weight`` as a float tensor (``batch["weight"]``)."""

    def __init__(self, inner: Callable[[list[dict]], dict]):
        self.inner = inner

    def __call__(self, examples: list[dict]) -> dict:
        try:
            weights = [float(e["weight"]) for e in examples]
        except KeyError:
            raise ValueError("a ScPO example has no 'weight' (attrpipe.train.examples.scpo_example)") from None
        out = self.inner([{k: v for k, v in e.items() if k != "weight"} for e in examples])
        out["weight"] = torch.tensor(weights, dtype=torch.float32)
        return out


class ScPOTrainer(DPOTrainer):
    """TRL's ``DPOTrainer`` with ScPO's weighted loss. Its arguments are a ``DPOConfig`` with ``loss_type``
    ``["sigmoid"]`` (alpha 0) or ``["sigmoid", "sft"]`` with ``loss_weights`` ``[1, alpha]``
    (attrpipe.train.worker.trl_args); any other DPO variant (f-divergences, ``ld_alpha``, WPO weighting, precomputed
    reference log-probs) is refused rather than silently ignored."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        types = list(self.loss_types)
        if (types not in (["sigmoid"], ["sigmoid", "sft"]) or self.ld_alpha is not None
                or str(self.f_divergence_type) != "reverse_kl" or self.use_weighting or self.precompute_ref_logps
                or self.aux_loss_enabled):
            raise ValueError("ScPOTrainer: ScPO is the sigmoid DPO loss (loss_type ['sigmoid'] or ['sigmoid', 'sft']) "
                             "with the reverse KL, no ld_alpha, no WPO weighting, no precomputed reference log-probs")
        weights = dict(zip(types, self.loss_weights))
        self.dpo_weight, self.nll_weight = float(weights["sigmoid"]), float(weights.get("sft", 0.0))
        self.data_collator = WeightCollator(self.data_collator)

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        weight = inputs.pop("weight")
        completion_mask = inputs["completion_mask"]
        shift_mask = completion_mask[..., 1:]
        model_kwargs = {k: v for k, v in inputs.items() if k not in ("completion_mask", "ref_chosen_logps",
                                                                     "ref_rejected_logps")}
        model_kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = shift_mask.size(1)
        per_token_logps = outputs.log_probs[:, -seq_len:]  # 0 off the completions
        chosen_logps, rejected_logps = per_token_logps.sum(dim=1).chunk(2, dim=0)  # the batch is [chosen, rejected]
        # TRL's reference pass: the base with the adapter disabled, or its frozen "ref" adapter (no gradient)
        ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(
            self.model if self.ref_model is None else self.ref_model, inputs)
        chosen_mask, rejected_mask = shift_mask.chunk(2, dim=0)
        loss, terms = scpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
                                chosen_mask.sum(dim=1), weight.to(chosen_logps.device), beta=self.beta,
                                nll_weight=self.nll_weight, dpo_weight=self.dpo_weight)
        self._log_metrics(mode, outputs, shift_mask, inputs, weight, terms["nll"],
                          chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
        return (loss, outputs) if return_outputs else loss

    def _log_metrics(self, mode, outputs, shift_mask, inputs, weight, nll, chosen_logps, rejected_logps,
                     ref_chosen_logps, ref_rejected_logps) -> None:
        """TRL's DPO metrics (same names and reductions), plus ScPO's mean weight and NLL per token."""
        m, gather = self._metrics[mode], self.accelerator.gather
        seq_len = shift_mask.size(1)
        tokens = gather(shift_mask.sum()).sum()
        entropy = gather((outputs.entropy[:, -seq_len:].detach() * shift_mask).sum()).sum()
        m["entropy"].append((entropy / tokens).item() if tokens > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        m["num_tokens"] = [self._total_train_tokens]
        chosen_mask = shift_mask.chunk(2, dim=0)[0].bool()
        top1 = outputs.is_top1[:, -seq_len:].chunk(2, dim=0)[0] & chosen_mask
        chosen_tokens = gather(chosen_mask.sum()).sum()
        m["mean_token_accuracy"].append((gather(top1.sum()).sum() / chosen_tokens).item() if chosen_tokens > 0
                                        else 0.0)
        chosen_rewards = self.beta * (chosen_logps - ref_chosen_logps).detach()
        rejected_rewards = self.beta * (rejected_logps - ref_rejected_logps).detach()
        m["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        m["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        m["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        m["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        m["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        m["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        m[WEIGHT_METRIC].append(gather(weight.to(chosen_logps.device).float()).mean().item())
        m["scpo/nll"].append(gather(nll.detach()).mean().item())
