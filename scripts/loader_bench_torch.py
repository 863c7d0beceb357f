"""Train/eval loader throughput of the reference pipeline (PyTorch DataLoader + torchvision),
for comparison with `cargo bench -p transreid-data --bench loader`.

Reads a Market-1501-layout folder, e.g. the synthetic set the Rust benchmark keeps with
`--dir`:

    cargo bench -p transreid-data --bench loader -- --dir /var/tmp/synth-bench
    python3 scripts/loader_bench_torch.py --dir /var/tmp/synth-bench --workers 0,1,2

Transforms as in the reference's make_dataloader.py (256x128, ViT config): bicubic resize,
flip 0.5, pad 10, random crop, ToTensor, Normalize(0.5, 0.5), timm-0.3.2 RandomErasing(0.5,
mode='pixel', max_count=1); batches of 64 from a P x K = 16 x 4 identity sampler. Eval: bilinear
resize, ToTensor, Normalize, batches of 64 over query + train images.
"""
import argparse
import math
import random
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler


class PixelRandomErasing:
    """timm 0.3.2 RandomErasing(probability, mode='pixel', max_count=1) on a CHW tensor."""

    def __init__(self, probability=0.5, min_area=0.02, max_area=1 / 3, min_aspect=0.3):
        self.probability = probability
        self.min_area, self.max_area = min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def __call__(self, img):
        if random.random() > self.probability:
            return img
        chan, h, w = img.shape
        for _ in range(10):
            area = random.uniform(self.min_area, self.max_area) * h * w
            aspect = math.exp(random.uniform(*self.log_aspect))
            eh = int(round(math.sqrt(area * aspect)))
            ew = int(round(math.sqrt(area / aspect)))
            if ew < w and eh < h:
                top = random.randint(0, h - eh)
                left = random.randint(0, w - ew)
                img[:, top:top + eh, left:left + ew] = torch.empty((chan, eh, ew)).normal_()
                break
        return img


class ImageDataset(Dataset):
    def __init__(self, items, transform):
        self.items, self.transform = items, transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, pid, camid = self.items[index]
        return self.transform(Image.open(path).convert("RGB")), pid, camid


class RandomIdentitySampler(Sampler):
    """P identities x K images per batch, as the reference's sampler."""

    def __init__(self, items, batch_size, k):
        self.k, self.p = k, batch_size // k
        self.index = defaultdict(list)
        for i, (_, pid, _) in enumerate(items):
            self.index[pid].append(i)
        self.pids = list(self.index)

    def __iter__(self):
        chunks = defaultdict(list)
        for pid in self.pids:
            idxs = list(self.index[pid])
            if len(idxs) < self.k:
                idxs = list(np.random.choice(idxs, size=self.k, replace=True))
            random.shuffle(idxs)
            chunks[pid] = [idxs[i:i + self.k] for i in range(0, len(idxs) - self.k + 1, self.k)]
        available, out = [p for p in self.pids if chunks[p]], []
        while len(available) >= self.p:
            for pid in random.sample(available, self.p):
                out.extend(chunks[pid].pop(0))
                if not chunks[pid]:
                    available.remove(pid)
        return iter(out)


def read_split(folder):
    pattern = re.compile(r"([-\d]+)_c(\d)")
    items = []
    for path in sorted(Path(folder).glob("*.jpg")):
        pid, cam = map(int, pattern.search(path.name).groups())
        if pid != -1:
            items.append((str(path), pid, cam - 1))
    return items


def collate(batch):
    images, pids, camids = zip(*batch)
    return torch.stack(images), torch.tensor(pids), torch.tensor(camids)


def timed(loader):
    start, n = time.perf_counter(), 0
    for images, _, _ in loader:
        n += images.shape[0]
    return n, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--workers", default="0,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    root = Path(args.dir)
    train = read_split(root / "bounding_box_train")
    query = read_split(root / "query")
    normalize = T.Normalize(mean=[0.5] * 3, std=[0.5] * 3)
    train_tf = T.Compose([
        T.Resize([256, 128], interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(p=0.5),
        T.Pad(10),
        T.RandomCrop([256, 128]),
        T.ToTensor(),
        normalize,
        PixelRandomErasing(0.5),
    ])
    test_tf = T.Compose([T.Resize([256, 128]), T.ToTensor(), normalize])
    print(f"torch {torch.__version__}, {len(train)} train images")
    print("| loader | workers | images | seconds | images/s |")
    print("|---|---:|---:|---:|---:|")
    for workers in [int(w) for w in args.workers.split(",")]:
        train_loader = DataLoader(
            ImageDataset(train, train_tf), batch_size=64, num_workers=workers,
            sampler=RandomIdentitySampler(train, 64, 4), collate_fn=collate,
            persistent_workers=workers > 0,
        )
        timed(train_loader)  # epoch 0 warms caches and starts the workers
        n, secs = timed(train_loader)
        print(f"| torch train 256x128 | {workers} | {n} | {secs:.2f} | {n / secs:.0f} |")
        eval_loader = DataLoader(
            ImageDataset(query + train, test_tf), batch_size=64, shuffle=False,
            num_workers=workers, collate_fn=collate,
        )
        n, secs = timed(eval_loader)
        print(f"| torch eval 256x128 | {workers} | {n} | {secs:.2f} | {n / secs:.0f} |")


if __name__ == "__main__":
    main()
