"""GPU check of the dense path (issue #3): document-embedding throughput and exact top-k search
on CUDA, against the same machine's CPU in the same run.

Runs on the lent GPU machine (PyTorch + transformers, no Ray/LanceDB), with inputs prepared on
the build machine (see docs/benchmarks.md §6):
    runs/gpu/model/      all-MiniLM-L6-v2 weights (fp16 copy, to fit the transfer limit)
    runs/gpu/texts.json  10,000 document texts of the synthetic 100k corpus
    runs/gpu/ref.npy     sentence-transformers CPU embeddings of the first 256 texts (fp32 weights)

    python -m benchmarks.gpu_dense --out $OUT/gpu_dense.json

Embedding is mean pooling + L2 normalisation over the last hidden state, which is what the
sentence-transformers pipeline of this model computes; parity with the CPU reference is reported.
"""

import argparse
import json
import time

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer


def embed(model, tok, texts, device, batch, max_len, dtype):
    out = []
    order = np.argsort([-len(t) for t in texts])  # length-sorted batches: less padding
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for s in range(0, len(texts), batch):
            idx = order[s:s + batch]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len,
                      return_tensors="pt").to(device)
            h = model(**enc).last_hidden_state.float()
            m = enc["attention_mask"].unsqueeze(-1).float()
            v = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)
            out.append((idx, v.cpu()))
    res = torch.empty(len(texts), out[0][1].shape[1])
    for idx, v in out:
        res[torch.as_tensor(idx)] = v
    return res.numpy()


def timed_embed(model, tok, texts, device, batch, max_len, dtype):
    embed(model, tok, texts[:batch], device, batch, max_len, dtype)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    vecs = embed(model, tok, texts, device, batch, max_len, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return vecs, len(texts) / (time.perf_counter() - t)


def search_qps(n_docs, device, dtype, n_queries=8192, block=None, k=100, dim=384):
    block = block or max(1, min(1024, 2**30 // n_docs))  # score tile <= 2^30 elements
    g = torch.Generator(device=device).manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(n_docs, dim, device=device, generator=g), dim=1).to(dtype)
    Q = torch.nn.functional.normalize(torch.randn(n_queries, dim, device=device, generator=g), dim=1).to(dtype)
    torch.topk(Q[:block] @ X.T, k, dim=1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for s in range(0, n_queries, block):
        v, i = torch.topk(Q[s:s + block] @ X.T, k, dim=1)
        i.cpu()  # results leave the device, as the search actor needs them
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_queries / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="runs/gpu")
    p.add_argument("--out", required=True)
    p.add_argument("--cpu-docs", type=int, default=512)
    args = p.parse_args()
    texts = json.load(open(f"{args.data}/texts.json"))
    ref = np.load(f"{args.data}/ref.npy")
    tok = AutoTokenizer.from_pretrained(f"{args.data}/model")
    res = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "cpu_threads": torch.get_num_threads(), "docs": len(texts), "max_len": 256}
    cpu = torch.device("cpu")
    model_cpu = AutoModel.from_pretrained(f"{args.data}/model", dtype=torch.float32).eval()
    v, rate = timed_embed(model_cpu, tok, texts[: args.cpu_docs], cpu, 64, 256, torch.float32)
    res["cpu_fp32_docs_per_s"] = round(rate, 1)
    res["cpu_search_qps_100k"] = round(search_qps(100_000, cpu, torch.float32, n_queries=2048), 1)
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        model = AutoModel.from_pretrained(f"{args.data}/model", dtype=torch.float32).to(dev).eval()
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            for batch in (128, 512):
                vecs, rate = timed_embed(model, tok, texts, dev, batch, 256, dtype)
                cos = (vecs[:256] * ref).sum(1)
                res[f"gpu_{name}_b{batch}"] = {"docs_per_s": round(rate, 1), "cos_vs_cpu_min": round(float(cos.min()), 5),
                                               "cos_vs_cpu_mean": round(float(cos.mean()), 6)}
        for n in (100_000, 1_000_000, 10_000_000):
            for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
                res[f"gpu_search_qps_{n}_{name}"] = round(search_qps(n, dev, dtype), 1)
        res["gpu_peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(res, indent=1))
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
