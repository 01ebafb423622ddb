"""The content stage end to end: real ingest of a small world with crawled pages, local photographs and
broken images -> content/ artifacts; a second run encodes nothing; given targets; URL-only pages."""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from linksage.config import Config, ConfigError, load_config
from linksage.content.image import Decoded, EfficientNetImageEncoder, decode_image
from linksage.content.text import HashingTextEncoder, page_text
from linksage.content.urltext import text_from_url
from linksage.pipeline import run_stages
from linksage.schema import IMAGES_TYPE

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def photo() -> Image.Image:
    spec = importlib.util.find_spec("matplotlib")
    assert spec and spec.origin
    path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    if not path.exists():
        pytest.skip("matplotlib's sample photograph grace_hopper.jpg is not installed")
    return Image.open(path).convert("RGB")


def save_jpeg(image: Image.Image, path: Path) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def bomb_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def img(url: str, w: int | None = None, h: int | None = None) -> dict[str, Any]:
    return {"url": url, "width": w, "height": h, "alt": None}


def make_world(root: Path, *, embeddings: bool = False, pin_images: bool = False, dims: str = "") -> Path:
    """Input tables (Parquet) of 4 pins and 5 pages, photographs under root/img; returns a config file."""
    images = root / "img"
    images.mkdir(parents=True)
    p = photo()
    save_jpeg(p, images / "large.jpg")
    save_jpeg(p.resize((p.width // 4, p.height // 4)), images / "small.jpg")
    save_jpeg(p.rotate(90, expand=True).resize((120, 90)), images / "other.jpg")
    large = (images / "large.jpg").read_bytes()
    (images / "broken.jpg").write_bytes(large[: len(large) // 2])  # truncated
    (images / "bomb.png").write_bytes(bomb_png())
    pages = pa.table(
        {
            "url": [
                "https://news.example.com/2013/04/grace-hopper-navy",
                "https://photos.example.org/gallery/portrait",
                "https://www.example.net/best-pizza-recipes-for-kids",
                "https://broken.example.com/page",
                "https://empty.example.com/",
            ],
            "title": ["Grace Hopper joins the Navy", "Portrait gallery", None, "Broken images", None],
            "description": ["A pioneer of computing.", None, None, None, None],
            "body": ["Grace Hopper was a computer scientist. " * 20, "Photos of people.", None, "text", None],
            "images": pa.array(
                [
                    # og:image first with no size; the large one has wrong attributes: decoded sizes decide
                    [img("small.jpg"), img("https://cdn.example.com/photos/missing.jpg"), img("large.jpg", 10, 10)],
                    [img("other.jpg"), img(f"file://{images}/small.jpg"), img("large.jpg"), img("small.jpg")],
                    None,
                    [img("broken.jpg"), img("bomb.png")],
                    [],
                ],
                IMAGES_TYPE,
            ),
        }
    )
    pq.write_table(pages, root / "pages.parquet")
    pins: dict[str, Any] = {
        "pin_id": ["a", "b", "c", "d"],
        "text": ["Grace Hopper navy computing", "portrait photos", "pizza for kids", ""],
    }
    if embeddings:
        pins["embedding"] = pa.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0], [0.0, -2.0]], pa.list_(pa.float32(), 2))
    if pin_images:
        pins["image_url"] = [str(images / "small.jpg"), None, str(images / "broken.jpg"), str(images / "other.jpg")]
    pq.write_table(pa.table(pins), root / "pins.parquet")
    pq.write_table(
        pa.table(
            {
                "pin_id": ["a", "b", "b", "c", "d", "d"],
                "url": [
                    "https://news.example.com/2013/04/grace-hopper-navy",
                    "https://photos.example.org/gallery/portrait",
                    "https://www.example.net/best-pizza-recipes-for-kids?utm_source=x",
                    "https://www.example.net/best-pizza-recipes-for-kids",
                    "https://broken.example.com/page",
                    "https://empty.example.com/",
                ],
            }
        ),
        root / "links.parquet",
    )
    config = root / "config.toml"
    config.write_text(
        "\n".join(
            [
                "[ingest]",
                'source = "tables"',
                "[ingest.tables]",
                f'pins = "{root / "pins.parquet"}"',
                f'links = "{root / "links.parquet"}"',
                f'pages = "{root / "pages.parquet"}"',
                "[content]",
                'text_encoder = "hashing"',
                "hashing_dim = 64",
                f'image_dir = "{images}"',
                "max_images_per_page = 2",
                'device = "cpu"',
                f"pin_target_image = {'true' if pin_images else 'false'}",
                "[train]",  # Matryoshka dims that fit the targets: 2 given, 64 hashed text
                f"dims = {dims or ('[2]' if embeddings else '[16, 64]')}",
            ]
        )
    )
    return config


def load(run: Path, name: str) -> np.ndarray:
    return np.load(run / "content" / f"{name}.npy")


def table(run: Path, name: str) -> list[dict[str, Any]]:
    return pq.read_table(run / "ingest" / f"{name}.parquet").to_pylist()  # type: ignore[no-any-return]


def page_of(pages: dict[str, int], fragment: str) -> int:
    """Row of the one page whose canonical URL contains ``fragment``."""
    (row,) = [i for url, i in pages.items() if fragment in url]
    return row


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config, dict[str, Any]]:
    root = tmp_path_factory.mktemp("world")
    cfg = load_config(make_world(root))
    run = root / "runs" / "one"
    manifests = run_stages(cfg, run, ["content"])
    return run, cfg, manifests["content"]


def test_artifacts_follow_the_contract(world: tuple[Path, Config, dict[str, Any]]) -> None:
    run, _, manifest = world
    n_pages, n_pins = len(table(run, "pages")), len(table(run, "pins"))
    shapes = {
        "page_text": (n_pages, 64),
        "page_image": (n_pages, 1280),
        "page_has_image": (n_pages,),
        "page_image_tokens": (n_pages, 2, 1280),
        "page_image_mask": (n_pages, 2),
        "pin_text": (n_pins, 64),
        "pin_target": (n_pins, 64),
    }
    for name, shape in shapes.items():
        arr = load(run, name)
        assert arr.shape == shape, name
        assert arr.dtype == (np.bool_ if name.endswith(("has_image", "mask")) else np.float16), name
    for name in ("page_text", "page_image", "pin_text", "pin_target"):
        norms = np.linalg.norm(load(run, name).astype(np.float32), axis=1)
        assert np.all((np.abs(norms - 1) < 2e-3) | (norms == 0)), name
    assert manifest["metrics"]["image_dim"] == 1280 and manifest["metrics"]["targets"] == "computed"


def test_page_texts_are_crawled_content_else_url_words(world: tuple[Path, Config, dict[str, Any]]) -> None:
    run, _, manifest = world
    enc = HashingTextEncoder(64)
    vecs = load(run, "page_text").astype(np.float32)
    for row in table(run, "pages"):
        text = page_text(row["title"], row["description"], row["body"]) or text_from_url(row["url"])
        want = enc.encode([text])[0]
        np.testing.assert_allclose(vecs[row["page_idx"]], want, atol=2e-3)
    counts = manifest["counts"]
    assert counts["pages_with_content"] == 3 and counts["pages_url_only"] == 2
    pins = load(run, "pin_text").astype(np.float32)
    for row in table(run, "pins"):
        np.testing.assert_allclose(pins[row["pin_idx"]], enc.encode([row["text"]])[0], atol=2e-3)
    np.testing.assert_array_equal(load(run, "pin_target"), load(run, "pin_text"))  # computed from the text


def test_page_images_mean_tokens_and_failures(world: tuple[Path, Config, dict[str, Any]]) -> None:
    run, _, manifest = world
    images = run.parent.parent / "img"
    enc = EfficientNetImageEncoder()
    decoded = {n: decode_image((images / n).read_bytes()) for n in ("large.jpg", "small.jpg", "other.jpg")}
    assert all(isinstance(d, Decoded) for d in decoded.values())
    d: dict[str, Decoded] = {k: v for k, v in decoded.items() if isinstance(v, Decoded)}
    vec = dict(zip(d, enc.encode(np.stack([x.pixels for x in d.values()])), strict=True))
    pages = {r["url"]: r["page_idx"] for r in table(run, "pages")}
    has, mean = load(run, "page_has_image"), load(run, "page_image").astype(np.float32)
    tokens, mask = load(run, "page_image_tokens").astype(np.float32), load(run, "page_image_mask")

    hopper = page_of(pages, "grace-hopper")
    assert has[hopper] and mask[hopper].tolist() == [True, True]
    np.testing.assert_allclose(tokens[hopper, 0], vec["large.jpg"], atol=3e-3)  # largest first, by decoded size
    np.testing.assert_allclose(tokens[hopper, 1], vec["small.jpg"], atol=3e-3)
    w = np.array([d["large.jpg"].area, d["small.jpg"].area], np.float64)
    want = w[0] * vec["large.jpg"] + w[1] * vec["small.jpg"]
    np.testing.assert_allclose(mean[hopper], want / np.linalg.norm(want), atol=3e-3)

    gallery = page_of(pages, "gallery")  # 4 listed, M = 2 tokens, all 4 in the mean
    np.testing.assert_allclose(tokens[gallery, 0], vec["large.jpg"], atol=3e-3)
    np.testing.assert_allclose(tokens[gallery, 1], vec["small.jpg"], atol=3e-3)
    area = {name: float(x.area) for name, x in d.items()}
    want = area["other.jpg"] * vec["other.jpg"] + 2 * area["small.jpg"] * vec["small.jpg"]
    want += area["large.jpg"] * vec["large.jpg"]
    np.testing.assert_allclose(mean[gallery], want / np.linalg.norm(want), atol=3e-3)

    for fragment in ("broken.example", "empty.example", "pizza"):
        row = page_of(pages, fragment)
        assert not has[row] and not mask[row].any() and not mean[row].any(), fragment
    c = manifest["counts"]
    assert c["pages_with_image"] == 2
    assert c["images_failed_corrupt"] == 1 and c["images_failed_bomb"] == 1 and c["images_missing"] == 1
    assert c["images_ok"] == 6 and c["images_encoded"] == 3  # 3 distinct pictures behind 6 listings


def test_second_run_encodes_nothing_and_writes_the_same(world: tuple[Path, Config, dict[str, Any]]) -> None:
    run, cfg, first = world
    other = run.parent / "two"  # another run dir beside the first: the cache is shared
    second = run_stages(cfg, other, ["content"])["content"]
    c = second["counts"]
    assert c["texts_encoded"] == 0 and c["text_cache_hits"] == first["counts"]["texts_encoded"]
    assert c.get("images_encoded", 0) == 0 and c["image_cache_hits"] == first["counts"]["images_encoded"]
    for name in ("page_text", "page_image", "page_image_tokens", "page_image_mask", "pin_text", "pin_target"):
        np.testing.assert_array_equal(load(run, name), load(other, name), err_msg=name)
    forced = run_stages(cfg, other, ["content"], force=True)["content"]["counts"]
    assert forced["texts_encoded"] == 0 and forced.get("images_encoded", 0) == 0


def test_cache_off_and_no_images_mode(tmp_path: Path) -> None:
    cfg = load_config(make_world(tmp_path))
    cfg = replace(cfg, content=replace(cfg.content, image_encoder="none", cache=False))
    run = tmp_path / "runs" / "noimg"
    manifest = run_stages(cfg, run, ["content"])["content"]
    assert load(run, "page_image").shape == (5, 0) and not load(run, "page_has_image").any()
    assert not (run / "content" / "page_image_tokens.npy").exists()
    assert manifest["metrics"]["cache_dir"] is None and not (tmp_path / "runs" / ".cache").exists()


def test_given_targets_are_normalised_and_bad_rows_counted(tmp_path: Path) -> None:
    cfg = load_config(make_world(tmp_path, embeddings=True))
    cfg = replace(cfg, content=replace(cfg.content, image_encoder="none"))
    run = tmp_path / "runs" / "given"
    manifest = run_stages(cfg, run, ["content"])["content"]
    target = load(run, "pin_target").astype(np.float32)
    by_id = {r["pin_id"]: r["pin_idx"] for r in table(run, "pins")}
    np.testing.assert_allclose(target[by_id["a"]], [0.6, 0.8], atol=1e-3)
    np.testing.assert_allclose(target[by_id["d"]], [0.0, -1.0], atol=1e-3)
    assert not target[by_id["c"]].any()  # a zero embedding cannot be normalised: zero row, counted
    assert manifest["counts"]["pin_targets_given"] == 3 and manifest["counts"]["pin_targets_invalid"] == 1
    assert manifest["metrics"]["target_dim"] == 2


def test_dims_wider_than_the_targets_are_refused_before_any_encoding(tmp_path: Path) -> None:
    cfg = load_config(make_world(tmp_path / "given", embeddings=True, dims="[2, 4]"))
    run = tmp_path / "runs" / "wide"
    with pytest.raises(ConfigError, match=r"largest dim 4 exceeds the pins' target embedding dim 2"):
        run_stages(cfg, run, ["content"])
    assert (run / "ingest" / "pages.parquet").exists()  # ingest ran; content refused before encoding a text
    assert not list(run.glob("**/page_text.npy"))
    cfg = load_config(make_world(tmp_path / "hashed", dims="[16, 128]"))  # hashed text: 64 wide, no pin images
    with pytest.raises(ConfigError, match=r"largest dim 128 exceeds the pins' target embedding dim 64"):
        run_stages(replace(cfg, content=replace(cfg.content, image_encoder="none")), run, ["content"])


def test_pin_targets_with_images(tmp_path: Path) -> None:
    cfg = load_config(make_world(tmp_path, pin_images=True))
    run = tmp_path / "runs" / "pinimg"
    manifest = run_stages(cfg, run, ["content"])["content"]
    target = load(run, "pin_target").astype(np.float32)
    text = load(run, "pin_text").astype(np.float32)
    by_id = {r["pin_id"]: r["pin_idx"] for r in table(run, "pins")}
    assert target.shape == (4, 64 + 1280) and manifest["counts"]["pins_with_image"] == 2
    a = target[by_id["a"]]  # text and image: each half scaled by 1/sqrt(2)
    np.testing.assert_allclose(a[:64], text[by_id["a"]] / np.sqrt(2), atol=2e-3)
    assert abs(np.linalg.norm(a[64:]) - 1 / np.sqrt(2)) < 2e-3
    np.testing.assert_allclose(target[by_id["b"]][:64], text[by_id["b"]], atol=2e-3)  # no image: text only
    d = target[by_id["d"]]  # empty text, an image: the image alone
    assert not d[:64].any() and abs(np.linalg.norm(d[64:]) - 1) < 2e-3
    assert manifest["counts"]["pin_images_failed_corrupt"] == 1


def test_default_minilm_encoder_end_to_end(tmp_path: Path) -> None:
    cfg = load_config(make_world(tmp_path))
    cfg = replace(cfg, content=replace(cfg.content, text_encoder="minilm", text_precision="fp32", image_encoder="none"))
    run = tmp_path / "runs" / "minilm"
    manifest = run_stages(cfg, run, ["content"])["content"]
    assert manifest["metrics"]["text_encoder"] == "all-MiniLM-L6-v2-float"
    vecs = load(run, "page_text").astype(np.float32)
    assert vecs.shape == (5, 384)
    pages = {r["url"]: r["page_idx"] for r in table(run, "pages")}
    pizza = vecs[page_of(pages, "pizza")]
    pins = load(run, "pin_text").astype(np.float32)
    by_text = {r["text"]: r["pin_idx"] for r in table(run, "pins")}
    assert pizza @ pins[by_text["pizza for kids"]] > pizza @ pins[by_text["portrait photos"]] + 0.2


@pytest.mark.shared
def test_reddit_slice_has_no_images_and_stays_cheap(tmp_path: Path) -> None:
    posts = SHARED / "reddit-top-2.5m" / "link_posts"
    if not (posts / "part-1.parquet").exists():
        pytest.skip(f"{posts} is missing: the shared Reddit data lives beside the repository")
    cfg = load_config(
        None,
        [
            'ingest.source="reddit"',
            f'ingest.reddit.posts="{posts}"',
            f'ingest.reddit.subreddits="{SHARED / "reddit-top-2.5m" / "subreddits.parquet"}"',
            'ingest.reddit.start="2013-05-01"',
            "ingest.reddit.max_posts=3000",
            'content.text_encoder="hashing"',
            'content.device="cpu"',
        ],
    )
    run = tmp_path / "runs" / "reddit"
    manifest = run_stages(cfg, run, ["content"])["content"]
    n_pages = len(pq.read_table(run / "ingest" / "pages.parquet", columns=["page_idx"]))
    assert manifest["counts"]["pages_url_only"] == n_pages and manifest["metrics"]["image_dim"] == 0
    assert load(run, "page_image").shape == (n_pages, 0)
    assert not (run / "content" / "page_image_tokens.npy").exists()
    assert json.loads((run / "content" / "manifest.json").read_text())["counts"]["texts_encoded"] > 0
