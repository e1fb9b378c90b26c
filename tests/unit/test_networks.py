"""Network shapes, token counts, no silent caps, and RevIN behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smartmarket.models.networks import (
    CNNLSTM,
    GroupPatchTransformer,
    InputNormaliser,
    build_network,
    count_parameters,
    network_config,
)

GROUPS = {"price": (0, 1, 2, 3), "volume": (4, 5), "volatility": (6, 7)}
N_FEATURES = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_seed_transformer_two_stage_attention_over_64_patch_tokens() -> None:
    torch.manual_seed(0)
    model = build_network("transformer", network_config("transformer", "seed"), N_FEATURES, GROUPS).eval()
    assert isinstance(model, GroupPatchTransformer)
    cfg = model.config
    assert (cfg.d_model, cfg.nhead, cfg.num_layers, cfg.context) == (256, 8, 6, 1024)
    assert (cfg.patch_len, cfg.stride, cfg.mixing, cfg.positional) == (16, 16, "two_stage", "sinusoidal")
    assert model.num_patches == 64  # non-overlapping patches of 16 bars
    assert model.group_tokens_per_sample == 3 * 64 and model.tokens_per_sample == 64
    assert len(model.encoder.layers) == 6 and model.encoder.layers[0].norm_first
    assert model.cross_group is not None and model.cross_group.attention.num_heads == 8
    seen: dict[str, tuple[int, ...]] = {}

    def record_patch(module: torch.nn.Module, args: tuple[torch.Tensor], output: torch.Tensor) -> None:
        seen["patch"] = tuple(output.shape)

    def record_cross(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen["cross_group_query"] = tuple(args[0].shape)

    def record_encoder(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen["encoder"] = tuple(args[0].shape)

    model.patch_embeddings["volume"].register_forward_hook(record_patch)
    model.cross_group.attention.register_forward_pre_hook(record_cross)
    model.encoder.register_forward_pre_hook(record_encoder)
    with torch.inference_mode():
        logits = model(torch.randn(1, 1024, N_FEATURES))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    assert seen["patch"] == (1, 64, 256)  # one token per patch position for the group
    assert seen["cross_group_query"] == (64, 3, 256)  # per patch: attention over the 3 group tokens
    assert seen["encoder"] == (1, 64, 256)  # fused patch tokens attended over time
    assert 4_000_000 < count_parameters(model) < 6_000_000


def test_cross_group_attention_mixes_groups_within_a_patch_only() -> None:
    """Changing the volume columns of one patch changes that patch's fused token and no other."""
    torch.manual_seed(0)
    cfg = network_config("transformer", "small", context=64, stride=16, dropout=0.0, revin=False)
    model = build_network("transformer", cfg, N_FEATURES, GROUPS).eval()
    assert isinstance(model, GroupPatchTransformer) and model.num_patches == 4
    x = torch.randn(1, 64, N_FEATURES)
    moved = x.clone()
    moved[:, 16:32, 4:6] += 3.0  # volume columns of patch 1
    with torch.inference_mode():
        before, after = model.tokens(x), model.tokens(moved)
    changed = (before - after).abs().amax(dim=2)[0]
    assert changed[1] > 1e-3
    assert torch.all(changed[[0, 2, 3]] == 0)


def test_joint_mixing_keeps_every_group_token_in_the_sequence() -> None:
    cfg = network_config("transformer", "seed", mixing="joint", stride=8)
    model = build_network("transformer", cfg, N_FEATURES, GROUPS)
    assert isinstance(model, GroupPatchTransformer) and model.cross_group is None
    assert model.num_patches == 127 and model.tokens_per_sample == 3 * 127
    small = build_network("transformer", network_config("transformer", "small", mixing="joint"), N_FEATURES, GROUPS)
    assert small(torch.randn(2, 256, N_FEATURES)).shape == (2, 3)


def test_single_group_gives_exactly_the_patch_count() -> None:
    model = build_network("transformer", network_config("transformer", "small"), 3, {"price": (0, 1, 2)})
    assert isinstance(model, GroupPatchTransformer)
    assert model.tokens_per_sample == model.num_patches == (256 - 16) // 8 + 1


def test_seed_cnn_lstm_forward() -> None:
    model = build_network("cnn_lstm", network_config("cnn_lstm", "seed"), N_FEATURES).eval()
    assert isinstance(model, CNNLSTM) and model.sequence_length == 128
    with torch.inference_mode():
        assert model(torch.randn(1, 1024, N_FEATURES)).shape == (1, 3)


@pytest.mark.parametrize("kind", ["transformer", "cnn_lstm"])
def test_small_presets_and_no_silent_caps(kind: str) -> None:
    model = build_network(kind, network_config(kind, "small"), N_FEATURES, GROUPS)
    assert model(torch.randn(4, 256, N_FEATURES)).shape == (4, 3)
    with pytest.raises(ValueError, match="built for windows"):
        model(torch.randn(2, 300, N_FEATURES))  # longer context than built for: no cropping
    with pytest.raises(ValueError, match="built for windows"):
        model(torch.randn(2, 128, N_FEATURES))
    with pytest.raises(ValueError, match="built for windows"):
        model(torch.randn(2, 256, N_FEATURES - 1))


def test_groups_must_cover_every_column_once() -> None:
    with pytest.raises(ValueError):
        build_network("transformer", network_config("transformer", "small"), 4, {"price": (0, 1), "volume": (1, 2)})


def test_config_round_trips_through_json_dict() -> None:
    cfg = network_config("cnn_lstm", "small", context=64)
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()}
    rebuilt = build_network("cnn_lstm", as_json, 2)
    assert isinstance(rebuilt, CNNLSTM) and rebuilt.config == cfg


def test_training_statistics_scale_and_revin_removes_window_level_and_scale() -> None:
    norm = InputNormaliser(2, revin=False)
    norm.set_statistics(np.array([1.0, 10.0], dtype=np.float32), np.array([2.0, 5.0], dtype=np.float32))
    x = torch.tensor([[[3.0, 20.0]]])
    torch.testing.assert_close(norm(x), torch.tensor([[[1.0, 2.0]]]))

    revin = InputNormaliser(2, revin=True)
    x = torch.randn(3, 50, 2)
    moved = x * torch.tensor([4.0, 0.5]) + torch.tensor([100.0, -3.0])  # per-feature affine change of each window
    torch.testing.assert_close(revin(moved), revin(x), atol=1e-3, rtol=1e-3)
    out = revin(x)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(3, 2), atol=1e-5, rtol=0)
    assert {n for n, _ in revin.named_parameters()} == {"affine_weight", "affine_bias"}
    assert {"mean", "std"} <= set(revin.state_dict())  # training statistics travel with the weights
