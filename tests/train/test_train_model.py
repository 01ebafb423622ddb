"""The encoder: masked tokens have no influence, the last-layer shortcut equals the full computation."""

from __future__ import annotations

import pytest
import torch

from linksage.model import EncoderConfig, LinkSageEncoder, PageInputs, empty_inputs


def _model(image_dim: int = 12, neighbours: int = 5, image_slots: int = 3) -> LinkSageEncoder:
    torch.manual_seed(0)
    cfg = EncoderConfig(
        text_dim=16,
        image_dim=image_dim,
        image_slots=image_slots,
        neighbours=neighbours,
        output_dim=24,
        n_dims=3,
        d_model=32,
        layers=3,
        heads=4,
        mlp_ratio=2,
    )
    return LinkSageEncoder(cfg).eval()


def _masked_inputs(model: LinkSageEncoder, batch: int = 6) -> PageInputs:
    x = empty_inputs(model.cfg, batch)
    nbr_mask = x.nbr_mask.clone()
    nbr_mask[:, 3:] = False  # neighbours 3.. missing
    nbr_mask[0] = False  # page 0 has no neighbours at all
    img_mask = x.self_image_mask.clone()
    img_mask[:, 1:] = False  # one image each
    img_mask[1] = False  # page 1 has no image
    nbr_img = x.nbr_image_mask.clone()
    nbr_img[:, 1] = False  # neighbour 1 has no image
    return x._replace(nbr_mask=nbr_mask, self_image_mask=img_mask, nbr_image_mask=nbr_img)


def test_output_shape_and_token_count() -> None:
    model = _model()
    x = empty_inputs(model.cfg, 4)
    tokens, present = model.tokens(x)
    assert tokens.shape == (4, model.cfg.n_tokens, 32) and present.shape == (4, model.cfg.n_tokens)
    assert model.cfg.n_tokens == 1 + 1 + 3 + 1 + 5 + 5
    assert model(x).shape == (4, 24)


@torch.no_grad()
def test_masked_tokens_do_not_change_the_output() -> None:
    model = _model()
    x = _masked_inputs(model)
    before = model(x)
    g = torch.Generator().manual_seed(1)

    def scramble(t: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        noise = 100 * torch.randn(t.shape, generator=g)
        w = where.reshape(*where.shape, *([1] * (t.dim() - where.dim())))
        return torch.where(w, noise, t)

    y = x._replace(
        nbr_text=scramble(x.nbr_text, ~x.nbr_mask),
        nbr_image=scramble(x.nbr_image, ~(x.nbr_mask & x.nbr_image_mask)),
        nbr_log_visits=scramble(x.nbr_log_visits, ~x.nbr_mask),
        self_images=scramble(x.self_images, ~x.self_image_mask),
    )
    torch.testing.assert_close(model(y), before, rtol=0, atol=1e-5)
    # and a present neighbour does matter (the check above is not vacuous)
    z = x._replace(nbr_text=scramble(x.nbr_text, x.nbr_mask))
    assert (model(z) - before)[1:].abs().max() > 1e-3


@torch.no_grad()
def test_last_layer_shortcut_equals_full_computation() -> None:
    model = _model()
    x = _masked_inputs(model)
    h, present = model.tokens(x)
    attend = present[:, None, None, :]
    for block in model.blocks:
        h = block(h, attend)  # every token through every layer
    assert model.text_skip is not None
    full = model.head(model.ln_out(h[:, 0])) + model.text_skip(x.self_text)
    torch.testing.assert_close(model(x), full, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_content_only_model_ignores_neighbour_inputs() -> None:
    model = _model(neighbours=0)
    x = empty_inputs(model.cfg, 3)
    assert model.cfg.n_tokens == 1 + 1 + 3 + 1
    y = x._replace(nbr_text=torch.randn(3, 7, 16), nbr_mask=torch.ones(3, 7, dtype=torch.bool))
    torch.testing.assert_close(model(y), model(x))


@pytest.mark.parametrize("image_dim", [0, 8])
def test_backward_reaches_every_used_parameter(image_dim: int) -> None:
    model = _model(image_dim=image_dim).train()
    x = empty_inputs(model.cfg, 4)
    model(x).square().sum().backward()
    unused = {"log_logit_scale"}  # trained by the loss, not by the encoder's output
    missing = [n for n, p in model.named_parameters() if p.grad is None and n not in unused]
    assert missing == []


def test_temperature_is_clamped() -> None:
    model = _model()
    with torch.no_grad():
        model.log_logit_scale.fill_(50.0)
    assert torch.allclose(model.logit_scales(0.02), torch.full((3,), 50.0))
    with torch.no_grad():
        model.log_logit_scale.fill_(-3.0)
    assert torch.allclose(model.logit_scales(0.02), torch.ones(3))


@torch.no_grad()
def test_board_tokens_are_masked_and_unknown_boards_share_one_row() -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(
        text_dim=16, image_dim=0, image_slots=1, neighbours=2, output_dim=8, d_model=32, layers=2, heads=4,
        board_slots=3, n_boards=5,
    )  # fmt: skip
    model = LinkSageEncoder(cfg).eval()
    assert model.board_emb is not None
    x = empty_inputs(cfg, 4)
    assert x.board_text is not None and x.board_ids is not None and x.board_mask is not None
    assert model.tokens(x)[0].shape[1] == cfg.n_tokens == 3 + 3 + 2
    mask = x.board_mask.clone()
    mask[:, 1:] = False
    x = x._replace(board_mask=mask)
    before = model(x)
    scrambled = x._replace(
        board_text=torch.where(mask[..., None], x.board_text, 50 * torch.randn_like(x.board_text)),
        board_ids=torch.where(mask, x.board_ids, 0),
    )
    torch.testing.assert_close(model(scrambled), before, rtol=0, atol=1e-5)
    # a present board matters, and every index past the table (a board unseen in training) is one row
    other = x._replace(board_ids=torch.where(mask, (x.board_ids + 1) % 5, x.board_ids))
    assert (model(other) - before).abs().max() > 1e-4
    unseen_a = x._replace(board_ids=torch.where(mask, 5, x.board_ids))
    unseen_b = x._replace(board_ids=torch.where(mask, 99, x.board_ids))
    torch.testing.assert_close(model(unseen_a), model(unseen_b))


@torch.no_grad()
def test_domain_token_reads_the_domain_table_with_one_unknown_row() -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(
        text_dim=16, image_dim=0, image_slots=1, neighbours=0, output_dim=8, d_model=32, layers=2, heads=4,
        n_domains=4,
    )  # fmt: skip
    model = LinkSageEncoder(cfg).eval()
    assert model.domain_emb is not None
    torch.nn.init.normal_(model.domain_emb.weight)  # trained rows: the table starts at zero
    x = empty_inputs(cfg, 3)
    assert cfg.n_tokens == 4 and model.tokens(x)[0].shape[1] == 4
    ids = torch.tensor([0, 1, 2])
    base = model(x._replace(domain_ids=ids))
    assert (model(x._replace(domain_ids=torch.tensor([3, 1, 2]))) - base)[0].abs().max() > 1e-4
    unseen = [model(x._replace(domain_ids=torch.tensor([v, 1, 2]))) for v in (-1, 4, 1000)]
    for other in unseen[1:]:
        torch.testing.assert_close(other, unseen[0])
    torch.testing.assert_close(model(x._replace(domain_ids=None)), model(x._replace(domain_ids=torch.full((3,), -1))))
