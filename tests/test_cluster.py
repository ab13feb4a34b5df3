"""What clusters do to multi-day jobs: a rank killed under torchrun (twice), loaders made again and again in a
process with threads, hostile files, and annotation records that stay shared with the workers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from actionbench.data import decoding as decode
from actionbench.data.dataset import ClipTimeout, VideoClipDataset
from actionbench.data.formats import load_annotations
from actionbench.data.records import RecordTable, VideoRecord
from actionbench.data.synthetic import make_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.name=tsm_resnet18", "model.base_channels=4", "model.dropout=0.0", "data.frames=4", "data.size=32",
        "data.scale_size=32", "data.train_scales=[1.0]", "data.workers=1", "data.batch_size=4",
        "optim.warmup_epochs=0", "train.progress=false", "train.tensorboard=false", "test.num_clips=1",
        "test.num_crops=1", "data.index_cache=null", "train.deterministic=true", "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), "temporal", 4, 8, seed=5, frames=8, size=32,
                                  workers=1)


def _torchrun(args, *, restarts=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             f"--max-restarts={restarts}", "-m", "actionbench", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _workers(agent: int) -> list[int]:
    """The training processes torchrun's agent started (its children running actionbench)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == agent and b"actionbench" in cmdline:
            found.append(int(status.parent.name))
    return found


def _step(run: Path) -> int:
    try:
        return torch.load(run / "last.pt", weights_only=True)["step"]
    except Exception:  # not there yet, or being replaced
        return -1


def test_a_rank_killed_twice_under_torchrun_ends_with_the_uninterrupted_weights(data, tmp_path):
    common = [*TINY, f"data.train_list={data['train']}", f"data.val_list={data['val']}", "optim.epochs=3"]
    straight = _torchrun([*common, f"output_dir={tmp_path / 'straight'}"])
    assert straight.wait(timeout=600) == 0, straight.stderr.read()[-3000:]
    run = tmp_path / "elastic"
    job = _torchrun([*common, f"output_dir={run}"], restarts=3)
    for kill_after in (3, 9):  # a rank dies mid-epoch, twice; torchrun restarts the group each time
        deadline = time.time() + 300
        while _step(run) < kill_after and time.time() < deadline and job.poll() is None:
            time.sleep(0.05)
        victims = _workers(job.pid)
        assert victims and job.poll() is None, job.stderr.read()[-3000:] if job.poll() is not None else "no ranks"
        os.kill(victims[-1], signal.SIGKILL)
        while set(_workers(job.pid)) & set(victims) and time.time() < deadline:
            time.sleep(0.05)  # wait until the agent has restarted the group
    assert job.wait(timeout=600) == 0, job.stderr.read()[-3000:]
    ours = torch.load(run / "last.pt", weights_only=True)["model"]
    theirs = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert json.loads((run / "results.json").read_text())["clip_top1"] == json.loads(
        (tmp_path / "straight" / "results.json").read_text())["clip_top1"]


def test_hundreds_of_loaders_in_a_process_with_threads_never_hang(data, tmp_path):
    """Forking a process that has threads can deadlock the child; loaders' workers start from a forkserver.
    The process holds what a training holds: a gloo group, a TensorBoard writer, busy threads, and the previous
    loader's feeder threads while the next loader starts; 100 loaders x 3 passes = 300 iterators drained."""
    script = tmp_path / "soak.py"
    script.write_text(f"""
import threading, torch, torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from actionbench.data.dataset import build_dataset
from actionbench.engine.distributed import DistInfo
from actionbench.engine.evaluation import shard_loader

def busy(stop, writer):  # threads holding locks while loaders start: a logger, an allocator
    i = 0
    while not stop.is_set():
        writer.add_scalar("x", i, i); i += 1
        torch.zeros(1000).sum()

if __name__ == "__main__":  # workers started by a forkserver import the main module: the usual guard
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # its threads run throughout
    stop = threading.Event()
    writer = SummaryWriter({str(tmp_path / 'tb')!r})
    threads = [threading.Thread(target=busy, args=(stop, writer), daemon=True) for _ in range(3)]
    for t in threads: t.start()
    dataset = build_dataset({str(data['val'])!r}, num_frames=2, size=16, scale_size=16, mode="val", normalize=False)
    previous = None
    for i in range(100):
        loader = shard_loader(dataset, batch_size=16, workers=2, device=torch.device("cpu"), info=DistInfo())
        for _ in range(3):  # persistent workers: an iterator per pass, as epochs and evaluations do
            assert sum(len(batch[1]) for batch in loader) == len(dataset)
            dist.barrier()
        previous = iter(loader)  # keeps its workers and feeder threads alive while the next loader starts
        next(previous)
    del previous
    stop.set(); writer.close(); dist.destroy_process_group()
    print("done")
""")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-3000:]


def test_a_stuck_decoder_becomes_a_bad_video(data, tmp_path, monkeypatch):
    ann = load_annotations(data["train"])

    class Stuck:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            time.sleep(30)  # what a pathological file does to a decoder

        def __exit__(self, *exc):
            return False

    real = decode.open_video
    monkeypatch.setattr("actionbench.data.dataset.open_video",
                        lambda path, **k: Stuck() if "0000" in str(path) else real(path, **k))
    ds = VideoClipDataset(ann, root=data["root"], num_frames=4, size=32, mode="val", clip_timeout=0.5,
                          bad_video_log=tmp_path / "bad.tsv")
    start = time.time()
    stuck = next(i for i, r in enumerate(ds.records) if "0000" in r.path)
    assert ds[stuck][1] == -1 and time.time() - start < 5
    assert "longer than 0.5 s" in next(iter(ds.bad_video_summary().values()))
    assert ds[stuck + 1][1] >= 0  # the next clip decodes normally: the alarm is off again
    with pytest.raises(ClipTimeout), decode_budget(0.2):
        time.sleep(2)


def decode_budget(seconds):
    from actionbench.data.dataset import time_budget

    return time_budget(seconds, Path("x.mp4"))


def test_hostile_headers_are_refused_by_name(tmp_path, monkeypatch):
    video = tmp_path / "huge.y4m"  # a raw YUV stream whose header claims 12000 x 12000 pixels
    video.write_bytes(b"YUV4MPEG2 W12000 H12000 F30:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x00" * 64)
    with pytest.raises(decode.VideoDecodeError, match="huge.y4m: its header claims 12000x12000"):
        decode.open_video(video)
    folder = tmp_path / "frames"
    folder.mkdir()
    # a JPEG header (SOI, SOF0 with 60000 x 60000) and nothing to decode
    sof = bytes([0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xEA, 0x60, 0xEA, 0x60, 0x03,
                 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF, 0xD9])
    (folder / "00001.jpg").write_bytes(sof)
    with pytest.raises(decode.VideoDecodeError, match="00001.jpg: .*(claims 60000x60000|decompression bomb)"):
        decode.open_video(folder).get_frames([0])
    from tests.videos import write_video

    # a frame count beyond the cap: named, before the index grows
    monkeypatch.setattr("actionbench.data.decoding.video.MAX_FRAMES", 10)
    write_video(tmp_path / "long.mp4", frames=24)
    with pytest.raises(decode.VideoDecodeError, match="long.mp4: 24 frames, more than the 10"):
        decode.open_video(tmp_path / "long.mp4")


def test_records_are_columns_that_workers_share():
    records = [VideoRecord(f"class {i % 7}/video {i}.mp4", i % 7, f"id{i}", None if i % 2 else 30 + i, i % 3)
               for i in range(1000)]
    table = RecordTable(records)
    assert list(table) == records and table[-1] == records[-1] and list(table[10:13]) == records[10:13]
    assert table.labels().tolist() == [r.label for r in records]
    shared = table.share_memory()
    assert all(t.is_shared() for t in (shared._paths, shared._ints))
    # the columns travel to a spawned process by handle: the receiver reads the same records
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    process = context.Process(target=_echo_record, args=(shared, queue))
    process.start()
    assert queue.get() == records[123]
    process.join(timeout=60)


def _echo_record(table, queue):
    queue.put(table[123])
