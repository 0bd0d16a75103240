"""Time and peak memory of predicting one large photo: full logits against streamed labels.

Rows (each in a fresh process, the project's CPU model with random weights, eval mode,
``torch.inference_mode``, one synthetic ``--image`` photo already normalised):

- ``full_logits``: what ``predict`` did before: ``predict_full_image`` (every window's
  logits kept, then stitched, then upsampled to ``C x H x W``), then the argmax;
- ``streamed``: ``predict_full_image_labels``: each batch of windows is added to the
  stride-``o`` grid as it is predicted and the argmax is taken band by band, so neither
  all windows' logits nor the full-resolution logits exist at once.

``peak_mb`` is the process's resident-set high-water mark over the call (``VmHWM``: torch,
the model and the image included); ``extra_mb`` the part above the memory in use just
before the call. Goal (issue 15): at most 1 GB for a 12 MP photo.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

MODES = ("full_logits", "streamed")
TABLE_COLUMNS = ("mode", "image", "seconds", "peak_mb", "extra_mb", "labels_equal")
CSV_COLUMNS = (*TABLE_COLUMNS, "window_batch", "cpu", "torch", "threads", "mem_source", "error")


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    common.apply_host_memory(cfg["host_memory"])
    import torch
    import train_step

    from hrda_kedro.hrda.inference import predict_full_image, predict_full_image_labels
    from hrda_kedro.hrda.model_config import SlidingWindows

    common.set_threads(cfg["threads"])
    model = train_step._model({**train_step.DEFAULTS, "detail": (128, 128)}, "hrda").eval()
    height, width = cfg["image"]
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    windows = SlidingWindows((256, 256), (128, 128), cfg["batch"])
    memory = common.HostMemory()
    tic = time.perf_counter()
    with torch.inference_mode():
        if cfg["mode"] == "full_logits":
            logits = predict_full_image(model, image, windows)
            labels = logits.argmax(dim=1)
            del logits
        else:
            labels, _ = predict_full_image_labels(model, image, windows)
    seconds = time.perf_counter() - tic
    return {
        **common.machine_info("cpu"),
        "seconds": seconds,
        "peak_mb": memory.peak_mb(),
        "extra_mb": memory.peak_mb() - memory.baseline_mb,
        "mem_source": memory.source,
        "labels_digest": int(labels.to(torch.int64).mul(7919).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--image", type=common.hw_arg, default="3000x4000", help="photo size HxW")
    parser.add_argument(
        "--modes",
        type=common.comma_list,
        default=",".join(MODES),
        help="comma list of " + ", ".join(MODES),
    )
    parser.add_argument("--window-batch", type=common.count_arg(1), default=4, dest="batch")
    common.add_threads_option(parser)
    common.add_host_memory_option(parser)
    common.add_worker_options(parser)
    args = common.parse_args(parser, argv, worker)
    image = args.image
    rows, digests = [], {}
    for mode in args.modes:
        cfg = {"mode": mode, "image": image, "batch": args.batch, "threads": args.threads,
               "host_memory": args.host_memory}  # fmt: skip
        result = common.run_worker(Path(__file__), cfg, args.timeout)
        row = {"mode": mode, "image": common.fmt_hw(image), "window_batch": args.batch}
        if "error" in result:
            row["error"] = result["error"]
        else:
            row.update({k: result[k] for k in ("seconds", "peak_mb", "extra_mb", "cpu", "torch",
                                               "threads", "mem_source")})  # fmt: skip
            digests[mode] = result["labels_digest"]
        rows.append(row)
    for row in rows:
        if row["mode"] in digests:
            row["labels_equal"] = len(set(digests.values())) == 1
    out = args.out or common.RESULTS_DIR / f"large_image_{common.fmt_hw(image)}.csv"
    title = f"Predicting one {common.fmt_hw(image)} photo | {datetime.now():%Y-%m-%d %H:%M}"
    common.emit(title, rows, TABLE_COLUMNS, CSV_COLUMNS, out)
    return common.exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
