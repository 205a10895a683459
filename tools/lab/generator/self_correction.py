"""Self-correcting token maps for teacher-forced training.

Teacher forcing shows the transformer only perfect coarse scales, so at sampling time, when
its own coarse tokens are slightly off (a purple object drawn dark, a stray blob), the finer
scales meet inputs they never saw. On our small model they drift instead of repairing: an
object drawn purple at 8×8 ends blue at 16×16 (docs/default-model.md, "Self-correction").

The multi-scale residual VQ lets training show the repair: rebuild the image's latent f from
its cached tokens and residual, quantize it again scale by scale, replace some tokens of each
scale but the last by wrong ones, and let every later scale quantize what is left of f after
the wrong tokens. The inputs then hold the errors; the targets are the tokens that take f_hat
back toward f. Infinity (Han et al., 2024) trains its bitwise tokens this way.

The wrong tokens are mostly near misses (one of the codes nearest the right one, the kind of
mistake a model makes) and sometimes any code (a blob of another colour).
"""

from typing import Tuple

import torch

NEAR_CODES = 16        # near misses come from the codes ranked 2..NEAR_CODES+1 by distance
FAR_SHARE = 0.25       # share of the replaced tokens that take any code instead


def latent_from_cache(quantizer, indices: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The encoder's latent f [B, Cv, h, h] from cached token maps [B, Σ pn²] and the
    last-scale residual [B, h², Cv] (f = discrete f_hat + residual, HART's hybrid split)."""
    side = quantizer.patch_nums[-1]
    f_hat = quantizer.indices_to_fhat(quantizer.token_maps(indices))
    return f_hat + residual.transpose(1, 2).reshape(residual.shape[0], -1, side, side)


@torch.no_grad()
def self_correct(quantizer, indices: torch.Tensor, residual: torch.Tensor, max_rate: float,
                 generator: torch.Generator = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs' tokens, target tokens, last-scale residual), each shaped like its argument.

    Each image draws a rate in [0, max_rate); each token of scales 0..K-2 is replaced with that
    probability. The inputs' tokens are what f_hat is built from (with the wrong tokens); the
    targets are the right tokens given the wrong ones before them. The last scale is never
    replaced (nothing reads it), and the residual is what the last scale leaves of f. With
    max_rate 0 the targets are the cached tokens again (up to float16 rounding of the residual).
    """
    f = latent_from_cache(quantizer, indices.to(torch.int64), residual.float())
    batch, device = f.shape[0], f.device
    last = quantizer.num_scales - 1
    rate = (torch.rand(batch, generator=generator) * max_rate).to(device)
    draw = lambda t: t.to(device)   # drawn on the CPU generator, used where f lives
    used = []

    def replace(k: int, dist: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        take = right
        if k < last and max_rate > 0:
            n, vocab = dist.shape
            swap = draw(torch.rand(n, generator=generator)) < rate[:, None].expand(batch, n // batch).reshape(-1)
            near_rank = draw(torch.randint(1, NEAR_CODES + 1, (n,), generator=generator))
            near = dist.topk(NEAR_CODES + 1, dim=1, largest=False).indices.gather(1, near_rank[:, None])[:, 0]
            far = draw(torch.randint(0, vocab, (n,), generator=generator))
            wrong = torch.where(draw(torch.rand(n, generator=generator)) < FAR_SHARE, far, near)
            take = torch.where(swap, wrong, right)
        used.append(take.view(batch, -1))
        return take

    targets, _, new_residual = quantizer.encode_indices(f, replace=replace)
    return (torch.cat(used, 1), torch.cat([t.flatten(1) for t in targets], 1),
            new_residual.flatten(2).transpose(1, 2))
