"""Training and inference throughput: idealseg against an SSL4MIS-style reference pipeline.

Both sides train the same U-Net (supervised Dice + CE, SGD) at the same input size and batch on
the same dataset folder, and segment the same validation volumes, in one process on one machine.

The reference is written the way SSL4MIS writes it: a torch Dataset that opens the case file for
every sample, resizes with scipy.ndimage.zoom and augments with numpy/scipy (random rot90 + flip,
random rotation) inside DataLoader workers, float32 NCHW; inference feeds one slice at a time.
idealseg's side is its own engine: the in-memory slice store, batched tensor augmentation on the
training device, and batched whole-volume inference.

    python benchmarks/scripts/throughput.py DATASET [--size 128] [--batch 8] [--steps 40] [--repeat 3] [--out DIR]
    python benchmarks/scripts/throughput.py DATASET --profile 15 [--method ideal] [--amp] [--compile MODE] [--out DIR]
                                                         # where idealseg's step goes

Writes DIR/throughput.json and prints images/s, slices/s and the ratios (or DIR/profile_METHOD_COMPILE.txt). On a
shared machine one round can be off by 10 % or more: --repeat measures every quantity in several
interleaved rounds and reports the medians (each round is kept in the JSON).

It also measures the machine's limit in the same run: the float32 and bfloat16 matrix-product peak
(GFLOP/s of a 2048^2 product), the FLOPs of one image through the U-Net (counted by
torch.utils.flop_counter: forward + backward for training, forward for inference), and each rate as
a fraction of the peak of its precision. idealseg trains in float32 and, where the processor has
native bfloat16 (`amp`, the default), under bfloat16 autocast: both are measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy import ndimage
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset

from idealseg.atomic import atomic_file
from idealseg.config import resolve_config
from idealseg.data.dataset import Dataset as IdealDataset
from idealseg.engine.trainer import Trainer
from idealseg.inference.predictor import Predictor
from idealseg.losses.dice_ce import DiceCELoss
from idealseg.methods import METHODS
from idealseg.models.unet import ByteMaskDropout, UNet, fold_batchnorm
from idealseg.precision import autocast_dtype, cpu_has_native_bf16
from idealseg.runfolder.environment import cpu_model


class ReferenceSlices(Dataset):
    """SSL4MIS BaseDataSets + RandomGenerator: read, augment and resize one slice per item."""

    def __init__(self, root: Path, size: int):
        self.root, self.size = root, size
        ds = IdealDataset(root)
        self.items = [(c.id, z) for c in ds.split("train") for z in range(c.shape[0])]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        case, z = self.items[i]
        with h5py.File(self.root / "cases" / f"{case}.h5", "r") as f:
            image, label = f["image"][z], f["label"][z]
        if np.random.rand() > 0.5:
            k = np.random.randint(0, 4)
            image, label = np.rot90(image, k), np.rot90(label, k)
            axis = np.random.randint(0, 2)
            image, label = np.flip(image, axis).copy(), np.flip(label, axis).copy()
        elif np.random.rand() > 0.5:
            angle = np.random.randint(-20, 20)
            image = ndimage.rotate(image, angle, order=0, reshape=False)
            label = ndimage.rotate(label, angle, order=0, reshape=False)
        h, w = image.shape
        image = ndimage.zoom(image, (self.size / h, self.size / w), order=0)
        label = ndimage.zoom(label, (self.size / h, self.size / w), order=0)
        return torch.from_numpy(image.astype(np.float32))[None], torch.from_numpy(label.astype(np.int64))


def plain_unet(classes: int) -> UNet:
    """The same U-Net as SSL4MIS writes it: out-of-place activations and torch's own dropout
    (idealseg's activations run in place and its CPU dropout draws bytes)."""
    model = UNet(classes)
    for module in list(model.modules()):
        if isinstance(module, torch.nn.LeakyReLU):
            module.inplace = False
        for name, child in module.named_children():
            if isinstance(child, ByteMaskDropout):
                setattr(module, name, torch.nn.Dropout(child.p))
    return model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_training(root: Path, size: int, batch: int, steps: int, workers: int, device: torch.device) -> float:
    """Images per second of the reference training loop (after 5 warm-up steps)."""
    loader = DataLoader(ReferenceSlices(root, size), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    classes = IdealDataset(root).num_classes
    model = plain_unet(classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = DiceCELoss(classes)
    done, start = 0, None
    while done < steps + 5:
        for x, y in loader:
            if done == 5:
                _sync(device)
                start = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done >= steps + 5:
                break
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def _trainer(root: Path, run: Path, size: int, batch: int, iterations: int, channels_last: bool,
             amp: bool = False, compiled: str = "off", method: str = "supervised", labeled: str = "7") -> Trainer:
    """idealseg's engine training `method`: supervised on every labelled slice (the comparison with the
    reference); a pre-training method on batch / 2 slices (two views each); any other fine-tuning method
    on batch / 2 labelled (`labeled` patients) + batch / 2 unlabelled slices, as the gpu profile's 12 + 12."""
    stage = METHODS[method].stage
    options = dict(method=method, dataset=str(root), input_size=size, iterations=iterations, time_budget=0,
                   checkpoint_every=10**9, log_every=5, channels_last=channels_last, amp=amp, compile=compiled)
    if stage == "finetune":  # the reference's and the gpu protocol's optimiser (the cpu profile's is Adam)
        options.update(optimizer="sgd", lr=0.01)
    if method == "supervised":
        options.update(labeled="all", batch_labeled=batch, batch_unlabeled=0, val_every=0)
    elif stage == "pretrain":
        options.update(batch_unlabeled=batch // 2)
    else:
        options.update(labeled=labeled, batch_labeled=batch // 2, batch_unlabeled=batch // 2, val_every=0)
    return Trainer(resolve_config(stage, "cpu", None, options), run)


def idealseg_training(root: Path, size: int, batch: int, steps: int, channels_last: bool, amp: bool = False,
                      compiled: str = "off") -> float:
    """Images per second of idealseg's engine on the same model and batch (after 5 warm-up steps, which
    hold the compilation when `compiled` is not off)."""
    with tempfile.TemporaryDirectory() as tmp:
        _trainer(root, Path(tmp) / "run", size, batch, steps + 5, channels_last, amp, compiled).fit()
        rows = {int(r["step"]): float(r["time"]) for r in csv.DictReader(open(Path(tmp) / "run" / "log.csv"))}
    return steps * batch / (rows[steps + 5] - rows[5])


def profile_training(root: Path, size: int, batch: int, steps: int, out: Path, method: str = "supervised",
                     amp: bool = False, compiled: str = "off", labeled: str = "7") -> str:
    """torch.profiler over `steps` training steps of `method` (after 5 warm-up steps, which hold any
    compilation): OUT/profile_METHOD_COMPILE.txt, headed by the wall time of a step and, on a GPU, the time its
    kernels keep the device busy. Far less busy time than wall time means the host's launches, not the
    device, set the pace (what CUDA graphs remove)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(root, Path(tmp) / "run", size, batch, 5, True, amp, compiled, method, labeled)
        trainer.fit()
        trainer.save = lambda: None  # the steps alone: no end-of-fit checkpoint in the profile or the count
        trainer.cfg = replace(trainer.cfg, iterations=5 + steps)  # the config is frozen: a new one
        before = trainer.elapsed
        with profile(activities=activities) as prof:
            trainer.fit()  # its steps' time: the last reads the losses back (a wait)
        wall = (trainer.elapsed - before) / steps
        counter = _OperatorCount()
        trainer.cfg = replace(trainer.cfg, iterations=trainer.cfg.iterations + 1)
        with counter:
            trainer.fit()  # one more step, whole: the operators the host dispatches (a call, a dispatch, a launch each)
    events = prof.key_averages()
    busy = sum(e.self_device_time_total for e in events) / steps / 1e3 if device.type == "cuda" else float("nan")
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    head = (f"{method}, {size} px, batch {batch}, amp {amp}, compile {compiled}, {steps} steps, {cpu_model()}"
            f"{', ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}\n"
            f"wall {wall * 1e3:.1f} ms a step (profiler on); device busy {busy:.1f} ms a step; "
            f"{counter.count} operators dispatched a step (batch, augmentation, forward, backward, update)\n")
    text = head + events.table(sort_by=key, row_limit=25) + "\n"
    (out / f"profile_{method}_{compiled}.txt").write_text(text)
    return head


class _OperatorCount(TorchDispatchMode):
    """Counts the ATen operators dispatched while active, autograd's backward included."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _segment(model, case, size: int, batched: bool, device: torch.device, amp: bool) -> None:
    if batched:  # idealseg's whole-volume inference
        Predictor(lambda x: model(x).softmax(1), size, device=torch.device(device),
                  precision=autocast_dtype(torch.device(device), amp)).predict(case.image)
        return
    for z in range(case.image.shape[0]):  # SSL4MIS test_single_volume: zoom, one slice, zoom back
        h, w = case.image.shape[1:]
        x = ndimage.zoom(case.image[z], (size / h, size / w), order=0)
        out = model(torch.from_numpy(x.astype(np.float32))[None, None].to(device)).argmax(1)[0].cpu().numpy()
        ndimage.zoom(out, (h / size, w / size), order=0)


@torch.no_grad()
def inference(root: Path, size: int, batched: bool, device: torch.device, amp: bool | None = None) -> float:
    """Slices per second segmenting the validation volumes (resize back to native size included).
    idealseg's side runs under bfloat16 autocast with `amp` (None: on CUDA only, float32 on a CPU).

    Each side first segments one volume untimed: a GPU's first calls (kernel selection, bf16
    autocast caches) would otherwise be charged to whichever side runs them, and on 20 small
    volumes that warm-up is a large share of the whole.
    """
    ds = IdealDataset(root)
    if batched:  # idealseg's side as `load_run` gives it
        model = fold_batchnorm(UNet(ds.num_classes)).to(device, memory_format=torch.channels_last)
    else:
        model = plain_unet(ds.num_classes).to(device).eval()
    cases = [ds.load(c.id) for c in ds.split("val")]
    n = sum(c.image.shape[0] for c in cases)
    amp = device.type == "cuda" if amp is None else amp
    _segment(model, cases[0], size, batched, device, amp)
    _sync(device)
    start = time.perf_counter()
    for case in cases:
        _segment(model, case, size, batched, device, amp)
    _sync(device)
    return n / (time.perf_counter() - start)


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n matrix product in `dtype`: the machine's practical arithmetic limit."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up (library selection, caches)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def flops_per_image(classes: int, size: int) -> dict[str, float]:
    """FLOPs of one image through the U-Net, counted by torch: training (forward + backward) and inference."""
    from torch.utils.flop_counter import FlopCounterMode

    model = plain_unet(classes)
    x = torch.randn(2, 1, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    train = counter.get_total_flops() / 2
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return {"train": train, "inference": counter.get_total_flops() / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--out", default="benchmarks/results/throughput")
    parser.add_argument("--compile", default="off", choices=("off", "on", "cudagraphs", "max-autotune"),
                        help="also measure idealseg's training with this torch.compile setting (bf16 where native)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every measurement, interleaved; the medians are reported")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="only profile STEPS training steps; writes OUT/profile_METHOD_COMPILE.txt")
    parser.add_argument("--method", default="supervised", choices=sorted(METHODS), help="the method --profile profiles")
    parser.add_argument("--labeled", default="7", help="--profile's label budget for semi-supervised methods")
    parser.add_argument("--amp", action="store_true", help="--profile under autocast (bf16 where native)")
    args = parser.parse_args()
    root = Path(args.dataset)
    if args.profile:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        profile_training(root, args.size, args.batch, args.profile, Path(args.out), args.method, args.amp,
                         args.compile, args.labeled)
        print((Path(args.out) / f"profile_{args.method}_{args.compile}.txt").read_text())
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    machine = f"{cpu_model()}, {torch.get_num_threads()} torch threads"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)} (idealseg side with bf16 autocast)"
    torch.manual_seed(0)
    np.random.seed(0)
    size, batch, steps, workers = args.size, args.batch, args.steps, args.workers
    measures = {  # each measured once per round, rounds interleaved so that drift hits both sides alike
        ("train_images_per_s", "reference"): partial(reference_training, root, size, batch, steps, workers, device),
        ("train_images_per_s", "idealseg"): partial(idealseg_training, root, size, batch, steps, False),
        ("train_images_per_s", "idealseg_channels_last"): partial(idealseg_training, root, size, batch, steps, True),
        ("train_images_per_s", "idealseg_bf16"): partial(idealseg_training, root, size, batch, steps, True, True),
        ("peak_gflops", "float32"): partial(matmul_peak, torch.float32, device),
        ("peak_gflops", "bfloat16"): partial(matmul_peak, torch.bfloat16, device),
        ("inference_slices_per_s", "reference"): partial(inference, root, size, False, device),
        ("inference_slices_per_s", "idealseg"): partial(inference, root, size, True, device),
        ("inference_slices_per_s", "idealseg_bf16"): partial(inference, root, size, True, device, True),
    }
    if args.compile != "off":
        measures[("train_images_per_s", "idealseg_bf16_compiled")] = partial(
            idealseg_training, root, size, batch, steps, True, True, args.compile)
    rounds: dict[tuple[str, str], list[float]] = {key: [] for key in measures}
    for _ in range(args.repeat):
        for key, measure in measures.items():
            rounds[key].append(measure())
    result = {"machine": machine, "device": device.type, "workers": args.workers, "dataset": str(root),
              "input_size": args.size, "batch": args.batch, "steps": args.steps, "repeat": args.repeat}
    for (group, side), values in rounds.items():  # the median of the rounds; every round kept
        result.setdefault(group, {})[side] = float(np.median(values))
        result.setdefault(f"{group}_rounds", {})[side] = values
    t, i = result["train_images_per_s"], result["inference_slices_per_s"]
    result["train_ratio"] = t["idealseg_channels_last"] / t["reference"]  # channels_last is the default
    result["inference_ratio"] = i["idealseg"] / i["reference"]
    result["train_ratio_bf16"] = t["idealseg_bf16"] / t["reference"]  # equals float32 where bf16 is not native
    result["inference_ratio_bf16"] = i["idealseg_bf16"] / i["reference"]
    result["cpu_native_bf16"] = cpu_has_native_bf16()
    flops = flops_per_image(IdealDataset(root).num_classes, size)
    peak = result["peak_gflops"]
    result["flops_per_image"] = flops
    result["fraction_of_peak"] = {  # achieved GFLOP/s over the peak of the precision the side computes in
        "train_reference": t["reference"] * flops["train"] / 1e9 / peak["float32"],
        "train_idealseg_float32": t["idealseg_channels_last"] * flops["train"] / 1e9 / peak["float32"],
        "train_idealseg_bf16": t["idealseg_bf16"] * flops["train"] / 1e9 / peak["bfloat16"],
        "inference_reference": i["reference"] * flops["inference"] / 1e9 / peak["float32"],
        "inference_idealseg": i["idealseg"] * flops["inference"] / 1e9 / peak["float32"],
        "inference_idealseg_bf16": i["idealseg_bf16"] * flops["inference"] / 1e9 / peak["bfloat16"],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "throughput.json") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
