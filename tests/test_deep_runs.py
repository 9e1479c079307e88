"""Every deep method through ``relama-bench run``, with checkpoints in the formats the authors released.

The checkpoints are the small replicas in ``../shared/golden/*/replica`` (and a ReLaMa-CBAM
safetensors file made from the golden state), so these runs check loading, the adapters and the
runner together, not output quality.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from bench.cli import main
from conftest import ict_replica_folder, pluralistic_replica_folder, shared_path, write_photos


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    from methods.lama import save_generator
    from methods.nets.configs import build_generator

    folder = tmp_path_factory.mktemp("checkpoints")
    golden = torch.load(shared_path("golden", "relama_cbam", "golden_small.pt"), weights_only=True)
    config = {**json.loads(golden["config"]), "kind": "ffc_resnet_cbam"}
    generator = build_generator(config)
    generator.load_state_dict(golden["state_dict"])
    relama = folder / "relama_small.safetensors"
    save_generator(generator, relama, config)

    pluralistic = pluralistic_replica_folder(folder / "pluralistic")
    ict = ict_replica_folder(folder / "ckpts_ICT")
    return {
        "lama": str(shared_path("golden", "lama", "replica", "replica_best_small.ckpt")),
        "relama-cbam": str(relama),
        "context-encoder": str(shared_path("golden", "context_encoder", "replica", "replica_netG_streetview_small.pth")),
        "pluralistic": str(pluralistic),
        "ict": str(ict),
    }


def test_every_deep_method_runs_on_all_cases(tmp_path, checkpoints, capsys):
    data = write_photos(tmp_path / "data", 1, (48, 72), prefix="d")
    weights = [argument for name, path in checkpoints.items() for argument in ("--weights", f"{name}={path}")]
    runs = tmp_path / "runs"
    assert main(["run", "--data", str(data), "--methods", ",".join(checkpoints), "--cases", "small,region,large",
                 *weights, "--option", "ict.n_head=2", "--option", "ict.progress=false",
                 "--runs-dir", str(runs), "--no-progress", "--no-learned-metrics"]) == 0
    run_dir = (runs / "latest").resolve()
    errors = pd.read_csv(run_dir / "errors.csv")
    assert errors.empty, errors.to_dict("records")
    rows = pd.read_parquet(run_dir / "rows.parquet")
    assert sorted(set(rows["method"])) == sorted(checkpoints)
    assert len(rows) == 3 * len(checkpoints)
    report = (run_dir / "report.md").read_text()
    assert "Skipped methods" not in report and "`ict` (transformer" in report


def test_wrong_checkpoint_is_one_sentence(tmp_path, checkpoints, capsys):
    data = write_photos(tmp_path / "data", 1, (48, 72), prefix="d")
    assert main(["run", "--data", str(data), "--methods", "lama", "--cases", "small",
                 "--weights", f"lama={checkpoints['context-encoder']}", "--runs-dir", str(tmp_path / "runs"),
                 "--no-progress", "--no-learned-metrics"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("relama-bench: error: method lama could not run: could not be loaded (checkpoint ")
    assert "replica_netG_streetview_small.pth" in line
    # Loaded once, before its jobs: the method is skipped, not failed job by job.
    assert pd.read_csv((tmp_path / "runs" / "latest" / "errors.csv")).empty
