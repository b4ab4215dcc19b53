"""What the memory-augmented networks draw with ``--visualize``: frames over time of one sample.

Each figure is built from the ``internals`` a recorded forward left (tensors ``[B, T, ...]``, batch first) and
shows, above, the memory at the current step (a :class:`~miprometheus.plotting.Snapshot`: one frame per step) and,
below, the heads' weightings, gates and the predictions over the whole sequence
(:class:`~miprometheus.plotting.Panel` rows, time along x).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from miprometheus.models.memory.addressing import shift_offsets
from miprometheus.plotting import Frames, Panel, Snapshot, busiest_addresses, sequence_frames, to_numpy


def predictions_panel(predictions: torch.Tensor) -> Panel:
    """The predicted bits of one sample over time: the sigmoid of its logits ``[T, O]``."""
    return Panel("predictions (sigmoid of the logits)", to_numpy(torch.sigmoid(predictions.detach().float())).T,
                 ylabel="bit")


def shown_addresses(mass: np.ndarray, steps: int) -> tuple[np.ndarray, str, str]:
    """The addresses to draw of a memory of ``len(mass)`` addresses, for a sequence of ``steps`` items.

    A fixed memory larger than the sequence is mostly empty: the ``steps`` addresses the heads used most
    (``mass``: their attention summed over time) are shown. Returns those addresses, the axis label and the
    memory title's note of how many are shown.
    """
    n = len(mass)
    shown = busiest_addresses(mass, steps)
    where = "address" if shown[0] == 0 else f"address - {shown[0]} (mod {n})"
    part = f"; {len(shown)} of {n} shown" if len(shown) < n else ""
    return shown, where, part


def ntm_frames(internals: dict[str, torch.Tensor], inputs: torch.Tensor, predictions: torch.Tensor, index: int,
               title: str, extra_panels: Sequence[Panel] = ()) -> Frames:
    """The NTM figure (the original's visualisation mode 2) of sample ``index`` of recorded ``internals``.

    Above: the memory ``M_t`` (content bits x addresses) at the current step. Below, over time: the inputs, the
    weighting of read head 0 and of the write head (addresses x time), then for each of these two heads its
    interpolation gate, shift kernel and content weighting, then the predictions (sigmoid of the logits).
    ``inputs`` [T, I] and ``predictions`` [T, O] are the sample's; ``extra_panels`` go below the inputs.
    """
    weights = to_numpy(internals["weights"][index])      # [T, R + 1, N]
    content = to_numpy(internals["content"][index])      # [T, R + 1, N]
    shift = to_numpy(internals["shift"][index])          # [T, R + 1, S]
    memory = to_numpy(internals["memory"][index])        # [T, N, C]
    offsets = ", ".join(f"{o:+d}" for o in shift_offsets(shift.shape[-1]))
    panels = [Panel("inputs", to_numpy(inputs).T, ylabel="channel"),
              *extra_panels,
              Panel("read head 0: weighting", weights[:, 0].T, cmap="magma", ylabel="address"),
              Panel("write head: weighting", weights[:, -1].T, cmap="magma", ylabel="address")]
    for head, name in ((0, "read head 0"), (-1, "write head")):
        if "gate" in internals:
            gate = to_numpy(internals["gate"][index])[:, head]
            panels.append(Panel(f"{name}: gate g (1 = content, 0 = last weighting)", gate[None, :], cmap="Greys"))
        panels.append(Panel(f"{name}: shift kernel (rows: shift {offsets})", shift[:, head].T, cmap="Greys",
                            ylabel="offset"))
        if "gate" in internals:
            # Scaled to its own maximum: a content weighting over many similar rows is close to uniform (~1/N).
            peak = max(float(content[:, head].max()), 1e-6)
            panels.append(Panel(f"{name}: content weighting (colours up to its maximum, {peak:.2g})",
                                content[:, head].T, vmax=peak, cmap="magma", ylabel="address"))
    panels.append(predictions_panel(predictions))
    snapshot = Snapshot("memory M_t after the write (content bit x address)", memory.transpose(0, 2, 1),
                        cmap="RdBu_r", xlabel="address", ylabel="bit")
    return sequence_frames(panels, title, width=9.0, snapshots=[snapshot])


def dnc_frames(internals: dict[str, torch.Tensor], inputs: torch.Tensor, predictions: torch.Tensor, index: int,
               title: str) -> Frames:
    """The DNC figure of sample ``index``: memory and link matrix above; inputs, write and read weightings,
    usage, allocation, read modes, gates and predictions over time."""
    internals = {key: to_numpy(value[index]) for key, value in internals.items()}
    steps = internals["memory"].shape[0]
    heads = internals["read_weights"].shape[1]
    panels = [Panel("inputs", to_numpy(inputs).T, ylabel="channel"),
              Panel("write weighting w^w", internals["write_weights"].T, cmap="magma", ylabel="slot")]
    for head in range(heads):
        panels.append(Panel(f"read head {head}: weighting w^r", internals["read_weights"][:, head].T,
                            cmap="magma", ylabel="slot"))
    panels.append(Panel("usage u", internals["usage"].T, cmap="Greys", ylabel="slot"))
    panels.append(Panel("allocation weighting a", internals["allocation"].T, cmap="Greys", ylabel="slot"))
    for head in range(heads):
        panels.append(Panel(f"read head {head}: modes (backward, content, forward)",
                            internals["read_modes"][:, head].T, cmap="Greys", ylabel="mode"))
    gates = np.stack([internals["write_gate"], internals["allocation_gate"], *internals["free_gates"].T])
    panels.append(Panel("gates: write, allocation, free (head 0..)", gates, cmap="Greys", ylabel="gate"))
    panels.append(predictions_panel(predictions))
    snapshots = [
        Snapshot("memory M_t after the write (content x slot)", internals["memory"].transpose(0, 2, 1),
                 cmap="RdBu_r", xlabel="slot", ylabel="content"),
        # The same matrix in every frame: only the last step's links are recorded.
        Snapshot("link matrix L at the last step (row i follows column j)",
                 np.broadcast_to(internals["link"], (steps, *internals["link"].shape)), vmin=0.0, vmax=1.0,
                 cmap="magma", xlabel="slot j (written before)", ylabel="slot i"),
    ]
    return sequence_frames(panels, title, width=9.0, snapshots=snapshots)


def dwm_frames(internals: dict[str, torch.Tensor], index: int, title: str, jumps: Sequence[str]) -> Frames:
    """The DWM figure of sample ``index``: the memory at each step; the attention, the bookmark attention and
    the jump mixture (over ``jumps``, the targets in the order of its logits) of every head over time."""
    attention = to_numpy(internals["attention"][index])  # [T, heads, N]
    bookmark = to_numpy(internals["bookmark"][index])
    steps, heads, _ = attention.shape
    shown, where, part = shown_addresses(attention.sum((0, 1)) + bookmark.sum((0, 1)), steps)
    memory = to_numpy(internals["memory"][index])[:, shown].transpose(0, 2, 1)  # [T, C, shown]
    panels = []
    for head in range(heads):
        name = f"head {head}" if heads > 1 else "head"
        panels += [
            Panel(f"{name} attention (read and written at step t)", attention[:, head][:, shown].T, ylabel=where),
            Panel(f"{name} bookmark attention (after step t)", bookmark[:, head][:, shown].T, ylabel=where),
            Panel(f"{name} jump mixture: {', '.join(jumps)}", to_numpy(internals["jump"][index, :, head]).T,
                  cmap="magma", ylabel="jump"),
        ]
    bound = max(float(abs(memory).max(initial=0.0)), 1e-6)  # a diverging scale centred on 0
    snapshot = Snapshot(f"memory after step t's write (content x addresses{part})", memory, -bound, bound,
                        "RdBu_r", xlabel=where, ylabel="content")
    return sequence_frames(panels, title, snapshots=[snapshot])


def maes_frames(internals: dict[str, torch.Tensor], index: int, title: str) -> Frames:
    """The MAES figure of sample ``index``: the memory at each step; the encoder's write attention, the solver's
    read attention and gates, and the mode over time."""
    writes = to_numpy(internals["write_attention"][index])  # [T, N]
    reads = to_numpy(internals["read_attention"][index])
    shown, where, part = shown_addresses(writes.sum(0) + reads.sum(0), writes.shape[0])
    memory = to_numpy(internals["memory"][index])[:, shown].transpose(0, 2, 1)  # [T, C, shown]
    reads = reads[:, shown].T
    panels = [
        Panel("encoder write attention", writes[:, shown].T, ylabel=where),
        # The solver's gates are not normalised: its attention can exceed 1.
        Panel("solver read attention (unnormalised gates)", reads, 0.0, max(1.0, float(reads.max(initial=0.0))),
              ylabel=where),
        Panel("solver gates: shifted, encoder's last, address 0", to_numpy(internals["gates"][index]).T,
              cmap="magma", ylabel="gate"),
        Panel("mode (1 = solve)", to_numpy(internals["solving"][index]).reshape(1, -1), cmap="Greys"),
    ]
    snapshot = Snapshot(f"memory after step t (content x addresses{part})", memory, xlabel=where, ylabel="content")
    return sequence_frames(panels, title, snapshots=[snapshot])


__all__ = ["dnc_frames", "dwm_frames", "maes_frames", "ntm_frames", "predictions_panel", "shown_addresses"]
