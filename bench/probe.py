"""What the indexer pays to probe one closed segment: the box-level fMP4 probe against the PyAV demux probe.

Encodes 10 s segments shaped like a real camera's recording (1080p15, 1 s GOP, H.264 at about 4 Mbit/s, and
640x360 at about 0.55 Mbit/s) as fragmented MP4 with the recorder's own movflags, then probes each many times
both ways (the PyAV path is the baseline, measured in the same run) and reports CPU ms per probe.

    python -m bench.probe [--repeat 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.report import emit
from heldar.media.binary import ffmpeg_exe
from heldar.media.probe import _probe_by_demux, probe_segment
from heldar.media.recorder_command import FRAGMENTED_MP4_FLAGS

SHAPES = {"1080p15 4 Mbit/s": ("1920x1080", "4M"), "360p15 0.55 Mbit/s": ("640x360", "550k")}


def encode(out: Path, size: str, bitrate: str, seconds: int = 10) -> Path:
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc2=size={size}:rate=15", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
           "-b:v", bitrate, "-g", "15", "-pix_fmt", "yuv420p", "-f", "mp4", "-movflags", FRAGMENTED_MP4_FLAGS,
           str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=300)
    return out


def cpu_ms(fn: object, repeat: int) -> float:
    assert callable(fn)
    start = time.process_time()
    for _ in range(repeat):
        assert fn() is not None
    return (time.process_time() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--json", default=None, help="write the JSON here (else stdout)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="heldar-bench-probe-") as tmp:
        for label, (size, bitrate) in SHAPES.items():
            path = encode(Path(tmp) / f"{size}.mp4", size, bitrate)
            bytes_ = path.stat().st_size

            def demux(p: Path = path, n: int = bytes_) -> object:
                return _probe_by_demux(p, n, time.monotonic() + 10, 10)

            def boxes(p: Path = path) -> object:
                return probe_segment(p)

            same = boxes() == demux()
            demux_ms, boxes_ms = cpu_ms(demux, args.repeat), cpu_ms(boxes, args.repeat)
            rows.append({
                "segment": label, "bytes": bytes_, "demux_cpu_ms": round(demux_ms, 3),
                "boxes_cpu_ms": round(boxes_ms, 3), "speedup": round(demux_ms / boxes_ms, 1), "same_result": same,
                "per_camera_cpu_ms_per_s_at_10s_segments": {"demux": round(demux_ms / 10, 3),
                                                            "boxes": round(boxes_ms / 10, 3)},
            })  # fmt: skip
    result = {"bench": "probe", "repeat": args.repeat, "load_avg": os.getloadavg()[0], "rows": rows}
    lines = ["| segment | demux (baseline) ms | boxes ms | speedup | same result |", "|---|---|---|---|---|"]
    lines += [f"| {r['segment']} | {r['demux_cpu_ms']} | {r['boxes_cpu_ms']} | {r['speedup']}x | {r['same_result']} |"
              for r in rows]  # fmt: skip
    emit(result, "\n".join(lines), args.json)


if __name__ == "__main__":
    main()
