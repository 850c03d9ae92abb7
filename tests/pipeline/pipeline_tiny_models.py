"""Tiny, randomly initialised SD1.5 / SDXL + ControlNet folders, written with save_pretrained.

The folders have the layout of real ones (a base pipeline folder without a ControlNet, and a
separate ControlNet folder) so the backend loads them through the same from_pretrained path
operators' weights take. A fresh ControlNet is a no-op (three zero-initialised layer groups);
those are perturbed so that the pose map actually changes the output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _bytes_to_unicode() -> list[str]:
    # CLIP's byte-level BPE alphabet (same table as the tokenizer's).
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer(folder: Path) -> Any:
    """A character-level CLIP tokenizer (no merges) built offline from vocab.json + merges.txt."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def _text_config(tok: Any, **extra: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tok),
        max_position_embeddings=77,
        **extra,
    )


def perturb_controlnet(controlnet: Any, std: float = 0.3) -> None:
    """Give the zero-initialised output layers weights, or the map could never matter."""
    import torch

    groups = [
        controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    ]
    with torch.no_grad():
        for group in groups:
            for p in group.parameters():
                p.normal_(0.0, std)


def build(root: Path, variant: str) -> tuple[Path, Path]:
    """Write (model folder, controlnet folder) for ``variant`` (sd15 | sdxl) under ``root``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tok = write_tokenizer(root / f"{variant}-tokenizer")
    model_dir, cn_dir = root / variant, root / f"{variant}-controlnet"
    down = ("DownBlock2D", "CrossAttnDownBlock2D")
    if variant == "sd15":
        common: dict[str, Any] = dict(
            block_out_channels=(4, 8),
            layers_per_block=1,
            in_channels=4,
            down_block_types=down,
            cross_attention_dim=32,
            norm_num_groups=1,
        )
        unet = UNet2DConditionModel(
            sample_size=32,
            out_channels=4,
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            **common,
        )
        controlnet = ControlNetModel(conditioning_embedding_out_channels=(16, 32), **common)
        vae = AutoencoderKL(
            block_out_channels=[4, 8],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4,
            norm_num_groups=2,
        )
        scheduler = DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
        pipe: Any = StableDiffusionPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(_text_config(tok)),
            tokenizer=tok,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    else:
        # SDXL: two text encoders; cross attention sees both widths, the added time embedding
        # takes 6 time ids x 8 plus the pooled projection.
        common = dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            in_channels=4,
            down_block_types=down,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=6 * 8 + 32,
            cross_attention_dim=64,
        )
        unet = UNet2DConditionModel(
            sample_size=32,
            out_channels=4,
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            **common,
        )
        controlnet = ControlNetModel(conditioning_embedding_out_channels=(16, 32), **common)
        vae = AutoencoderKL(
            block_out_channels=[32, 64],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4,
        )
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            steps_offset=1,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
        )
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(_text_config(tok)),
            text_encoder_2=CLIPTextModelWithProjection(_text_config(tok, projection_dim=32)),
            tokenizer=tok,
            tokenizer_2=tok,
            unet=unet,
            scheduler=scheduler,
            add_watermarker=False,
        )
    pipe.save_pretrained(model_dir)
    perturb_controlnet(controlnet)
    controlnet.save_pretrained(cn_dir)
    return model_dir, cn_dir
