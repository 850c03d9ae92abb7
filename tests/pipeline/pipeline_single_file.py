"""Tiny single-file checkpoints in the layout people download: an A1111 / original-LDM style
``.safetensors`` of a whole SD1.5 pipeline (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.*``), the SGM layout of SDXL (``conditioner.embedders.0/1``, the
second an OpenCLIP with fused q/k/v), and a ControlNet as one diffusers-format file (how most
SDXL OpenPose ControlNets ship), each with a weights-free config folder.

The files are written by inverting diffusers' own LDM -> diffusers key conversion
(``diffusers.loaders.single_file_utils``), generalised to any block count and layers per block,
so ``from_single_file`` has to do the same work on them as on a real checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_LAYERS = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        rest = re.sub(rf"^{new}\.", f"{old}.", rest)
    return rest


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """diffusers UNet keys -> ``model.diffusion_model.*`` keys of the original layout."""
    per = int(config["layers_per_block"]) + 1
    up_has_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out: dict[str, Any] = {}
    for key, value in state.items():
        new: str | None = None
        for head, ldm in _UNET_LAYERS.items():
            if key.startswith(head + "."):
                new = ldm + key[len(head) :]
        if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{per * b + j + 1}.0.{_resnet(rest)}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            new = f"input_blocks.{per * int(m[1]) + int(m[2]) + 1}.1.{m[3]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{per * (int(m[1]) + 1)}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"output_blocks.{per * int(m[1]) + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            new = f"output_blocks.{per * int(m[1]) + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m[1])
            new = f"output_blocks.{per * b + per - 1}.{2 if up_has_attn[b] else 1}.conv.{m[2]}"
        if new is None:
            raise KeyError(f"no LDM name for UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


_VAE_ATTN = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """diffusers AutoencoderKL keys -> ``first_stage_model.*`` keys of the original layout."""
    n = len(config["up_block_types"])
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            rest = m[2]
            for a, b in _VAE_ATTN:
                rest = re.sub(rf"^{re.escape(a)}\.", f"{b}.", rest)
            new = f"{m[1]}.mid.attn_1.{rest}"
            if value.ndim == 2:  # the original attention is a 1x1 convolution
                value = value[:, :, None, None]
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            new = f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}"
        new = new.replace("conv_shortcut", "nin_shortcut")
        out["first_stage_model." + new] = value
    return out


def clip_to_ldm(state: dict[str, Any]) -> dict[str, Any]:
    """CLIP text encoder keys -> ``cond_stage_model.transformer.text_model.*``."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        body = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + body] = value
    return out


def config_only(src: Path, dst: Path) -> Path:
    """A copy of a diffusers folder without its weights (what operators download next to a
    single-file checkpoint: ``*.json`` and tokenizer files)."""
    for path in src.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt"):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return dst


def write_sd15_single_file(model_dir: Path, out: Path) -> Path:
    """The SD1.5 folder ``model_dir`` as one original-layout ``.safetensors`` at ``out``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae")
    text = CLIPTextModel.from_pretrained(model_dir / "text_encoder")
    state: dict[str, Any] = {}
    state |= unet_to_ldm(unet.state_dict(), dict(unet.config))
    state |= vae_to_ldm(vae.state_dict(), dict(vae.config))
    state |= clip_to_ldm(text.state_dict())
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out


def write_controlnet_single_file(cn_dir: Path, out: Path) -> Path:
    """A ControlNet folder's weights as one file (diffusers keys, no config beside it)."""
    shutil.copyfile(cn_dir / "diffusion_pytorch_model.safetensors", out)
    return out


def model_class(config_dir: Path) -> str:
    return str(json.loads((config_dir / "model_index.json").read_text())["_class_name"])


def build_sdxl(root: Path) -> tuple[Path, Path]:
    """A tiny SDXL folder + ControlNet whose two text encoders differ in width (32 and 48), as
    real SDXL's do (768 and 1280): ``from_single_file`` tells the encoders apart by width."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from pipeline_tiny_models import _text_config, perturb_controlnet, write_tokenizer
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tok = write_tokenizer(root / "sdxl-tokenizer")
    common: dict[str, Any] = dict(
        block_out_channels=(32, 64),
        layers_per_block=1,
        in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=32 + 48,
    )
    unet = UNet2DConditionModel(
        sample_size=32, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **common
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
    # The suite's tiny config, 48 wide instead of 32 (its helper fixes the width).
    wide = _text_config(tok, projection_dim=32)
    wide.hidden_size = 48
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(tok)),
        text_encoder_2=CLIPTextModelWithProjection(wide),
        tokenizer=tok,
        tokenizer_2=tok,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    model_dir, cn_dir = root / "sdxl", root / "sdxl-controlnet"
    pipe.save_pretrained(model_dir)
    perturb_controlnet(controlnet)
    controlnet.save_pretrained(cn_dir)
    return model_dir, cn_dir


def open_clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """CLIPTextModelWithProjection keys -> OpenCLIP keys (``prefix`` + ``transformer.resblocks``
    with fused q/k/v, ``ln_final``, ``positional_embedding``, transposed ``text_projection``)."""
    import torch

    out: dict[str, Any] = {}
    qkv: dict[str, dict[str, Any]] = {}
    names = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    for raw, value in state.items():
        key = raw if raw.startswith(("text_model.", "text_projection")) else "text_model." + raw
        if key.endswith("position_ids"):
            continue
        if key in names:
            out[prefix + names[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif m := re.match(
            r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(\w+)", key
        ):
            qkv.setdefault(f"{m[1]}.{m[3]}", {})[m[2]] = value
        elif m := re.match(r"text_model\.encoder\.layers\.(\d+)\.(.*)", key):
            rest = (
                m[2]
                .replace("self_attn.", "attn.")
                .replace("layer_norm1", "ln_1")
                .replace("layer_norm2", "ln_2")
                .replace("mlp.fc1", "mlp.c_fc")
                .replace("mlp.fc2", "mlp.c_proj")
            )
            out[f"{prefix}transformer.resblocks.{m[1]}.{rest}"] = value
        else:
            raise KeyError(f"no OpenCLIP name for {raw}")
    for layer_kind, parts in qkv.items():
        layer, kind = layer_kind.split(".")
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    return out


def write_sdxl_single_file(model_dir: Path, out: Path) -> Path:
    """The SDXL folder ``model_dir`` as one original-layout (SGM) ``.safetensors``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae")
    text = CLIPTextModel.from_pretrained(model_dir / "text_encoder")
    text2 = CLIPTextModelWithProjection.from_pretrained(model_dir / "text_encoder_2")
    state: dict[str, Any] = {}
    state |= unet_to_ldm(unet.state_dict(), dict(unet.config))
    state |= vae_to_ldm(vae.state_dict(), dict(vae.config))
    state |= {
        k.replace("cond_stage_model.transformer.", "conditioner.embedders.0.transformer."): v
        for k, v in clip_to_ldm(text.state_dict()).items()
    }
    state |= open_clip_to_ldm(text2.state_dict(), "conditioner.embedders.1.model.")
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out
