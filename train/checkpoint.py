"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds everything a run needs to continue exactly where it stopped: the model,
the optimiser, the scheduler, the AMP scaler, the number of epochs done, the best score so far,
the metrics history, torch's random state (dropout draws from it; data order and augmentation
do not, they follow from (seed, epoch, index)) and the config. Only tensors and plain Python
values go in, so ``weights_only=True`` loads it: a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from augkit.errors import AugkitError
from augkit.files import atomic_write

LAST, BEST = "last.pt", "best.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a crash leaves the previous file, never half a file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by ``save_checkpoint``; a clear error for a missing or broken file."""
    if not path.is_file():
        raise AugkitError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for bad files
        raise AugkitError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def rng_state() -> dict[str, Any]:
    """torch's random state, CPU and every CUDA device."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose state_dict keys are plain: without torch.compile's or DDP's wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)
