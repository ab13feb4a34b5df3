"""Real encoded test videos, made with PyAV: ordinary H.264, open GOP, edit lists, variable frame rate, MPEG-TS, VP9."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_image(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A frame that differs visibly from its neighbours: colour ramp by index and a moving square."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (i * 11) % 256
    image[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    image[..., 2] = (255 - i * 7) % 256
    x = (i * 3) % (width - 12)
    image[8:20, x : x + 12] = 255
    return image


def write_video(path: str | Path, frames: int = 48, *, width: int = 64, height: int = 48, fps: int = 30,
                codec: str = "libx264", gop: int = 12, bframes: int = 2, open_gop: bool = False,
                container_format: str | None = None, durations: list[int] | None = None,
                audio: bool = False, muxer_options: dict[str, str] | None = None) -> Path:
    """Encode `frames` frames; `durations` (in 1/1000 s) makes the frame rate variable; `audio` adds a silent AAC
    track before the video's, interleaved with it (video is then the container's second track)."""
    path = Path(path)
    with av.open(str(path), "w", format=container_format, options=muxer_options or {}) as container:
        sound = container.add_stream("aac", rate=44100, layout="mono") if audio else None
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}" + (":open-gop=1" if open_gop else "")
            stream.options = {"x264-params": params, "preset": "ultrafast" if not bframes else "fast"}
        if durations is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height), format="rgb24")
            if durations is not None:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += durations[i % len(durations)]
            for packet in stream.encode(frame):
                container.mux(packet)
            if sound is not None and i % 2 == 0:  # ~44100 / fps samples per frame, in 1024-sample frames
                silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                silence.sample_rate = 44100
                container.mux(sound.encode(silence))
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            container.mux(sound.encode())
    return path


def cut_with_edit_list(source: str | Path, path: str | Path, start_frame: int) -> Path:
    """Remux without re-encoding from the keyframe before `start_frame`, hiding the frames before it with an edit
    list (what `ffmpeg -ss T -c copy` writes): demuxers then mark those packets as discarded."""
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        packets = [p for p in src.demux(in_stream) if p.size]
        dts_order = sorted(p.pts for p in packets)
        shift = dts_order[start_frame]
        key_pts = max(p.pts for p in packets if p.is_keyframe and p.pts <= shift)
        first_dts = next(p.dts for p in packets if p.pts == key_pts)
        for packet in packets:
            if packet.dts < first_dts:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = out_stream
            dst.mux(packet)
    return Path(path)
