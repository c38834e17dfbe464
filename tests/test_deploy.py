"""The shipped programs: BN folding on any graph, the ONNX check, and the deploy benchmark."""

import pytest
import torch
from torch import nn

from benchrun import run_bench
from searchkit import deploy


class Shared(nn.Module):
    """One BN module called after two convs, and a conv whose output also feeds a skip."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)
        self.bn, self.bn_c = nn.BatchNorm2d(8), nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.bn(self.a(x))
        y = self.bn(self.b(y))  # self.bn twice: cannot be folded into either conv
        z = self.c(y)
        return self.bn_c(z) + z  # c's output has a second consumer: not folded either


def _randomise(net):
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def test_fold_leaves_what_it_cannot_fold_and_keeps_the_function():
    torch.manual_seed(0)
    net = _randomise(Shared())
    folded, n = deploy.fold_batchnorm(net, (3, 8, 8))
    assert n == 0 and isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn_c, nn.BatchNorm2d)
    seq = _randomise(nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)))
    folded, n = deploy.fold_batchnorm(seq, (3, 8, 8))
    assert n == 2 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), seq(x), atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in seq.modules())  # the original is untouched


def test_an_onnx_file_that_disagrees_with_torch_is_refused_and_removed(tmp_path):
    net = _randomise(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2)))
    net(torch.zeros(1, 3, 8, 8))
    with pytest.raises(deploy.DeployError, match="differs from the torch network's"):
        deploy.save_onnx(net, (3, 8, 8), tmp_path / "model.onnx", tolerance=-1.0)  # any difference fails
    assert not (tmp_path / "model.onnx").exists()
    info = deploy.save_onnx(net, (3, 8, 8), tmp_path / "model.onnx")
    assert info["max_rel_diff"] <= deploy.ONNX_TOLERANCE and info["batchnorm_folded"] == 1


@pytest.mark.slow
def test_deploy_bench_quick_form(tmp_path):
    data, text = run_bench("deploy", tmp_path, f"work={tmp_path / 'work'}", timeout=1500)
    assert "ORT speedup" in text and "Latency-bound winners" in text
    runs = data["runs"]
    assert {(r["space"], r["search"]) for r in runs} == {("channels", "latency"), ("tinynet", "latency")}
    for r in runs:
        assert set(r["ms"]) == {"1", "8"} and all(v > 0 for ms in r["ms"].values() for v in ms.values())
        assert r["arch"]["onnx"]["max_rel_diff"] <= 1e-4
        if r["search"] == "latency":
            assert r["arch"]["latency"]["runtime"] == "onnxruntime"
            assert r["arch"]["latency"]["predicted_ms"] <= r["bound_ms"]
