import io
import os
import unittest

import onnx
import torch
import torch.nn.functional as F

from hart.quantizer import QuantizerConfig
from hart.config import get_config
from hart.saved import build_dataclass, load_saved
from hart.vae import Decoder, GroupNorm, HybridTokenizer, VaeConfig, tokenizer_blob

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SMALL_VAE = VaeConfig(image_size=32, ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=8)
SMALL_Q = QuantizerConfig(vocab_size=32, channels=8, patch_nums=(1, 2, 3, 4, 6, 8))


def count(module):
    return sum(p.numel() for p in module.parameters())


class GroupNormPaths(unittest.TestCase):
    def test_decomposed_equals_native(self):
        gn = GroupNorm(48)  # 48 channels -> 12 groups (at least 4 channels per group)
        self.assertEqual(gn.num_groups, 12)
        self.assertEqual([GroupNorm(c).num_groups for c in (16, 32, 128, 160, 640)], [4, 8, 32, 32, 32])
        with torch.no_grad():
            gn.weight.normal_()
            gn.bias.normal_()
        x = torch.randn(2, 48, 5, 7) * 3 + 1
        self.assertLess((gn._decomposed(x) - F.group_norm(x, 12, gn.weight, gn.bias, 1e-6)).abs().max().item(), 1e-5)

    def test_group_count_is_a_config_value(self):
        """0 (the default, and what configs saved before the field mean) keeps the rule our small
        tokenizers were trained with; HART's published tokenizer uses 32 groups at every width."""
        def groups(config):
            return sorted({(m.num_channels, m.num_groups) for m in Decoder(config).modules() if isinstance(m, GroupNorm)})
        self.assertEqual(groups(SMALL_VAE), [(16, 4), (32, 8)])
        self.assertEqual(groups(VaeConfig(32, 32, (1, 2), 1, 8, norm_groups=32)), [(32, 32), (64, 32)])
        with self.assertRaises(ValueError):
            Decoder(VaeConfig(32, 16, (1, 2), 1, 8, norm_groups=32))
        saved = {k: v for k, v in SMALL_VAE.__dict__.items() if k != "norm_groups"}
        self.assertEqual(build_dataclass(VaeConfig, saved).norm_groups, 0)
        self.assertEqual(get_config("hart-0.7b-1024px").vae.norm_groups, 32)
        self.assertEqual(get_config("shapes-128").vae.norm_groups, 0)

    def test_shapes_checkpoint_loads_with_its_trained_grouping(self):
        blob = tokenizer_blob(load_saved(os.path.join(ROOT, "checkpoints", "hart-shapes-128.pt")))
        vae = build_dataclass(VaeConfig, blob["config"]["vae"])
        self.assertEqual(vae.norm_groups, 0)
        model = HybridTokenizer(vae, build_dataclass(QuantizerConfig, blob["config"]["quantizer"]))
        model.load_state_dict(blob["state_dict"])
        self.assertEqual(model.decoder.up[0].block[0].norm1.num_groups, 8)   # 32 channels, as trained

    def test_bf16_input_under_autocast(self):
        # torch 1.13's own GroupNorm fails here; ours computes in float32 and returns bf16.
        gn = GroupNorm(32)
        x = torch.randn(1, 32, 4, 4) * 5 + 3
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = gn(x.bfloat16())
        self.assertEqual(y.dtype, torch.bfloat16)
        ref = F.group_norm(x.bfloat16().float(), gn.num_groups, gn.weight, gn.bias, 1e-6)
        self.assertLess((y.float() - ref).abs().max().item(), 0.02)


class HybridTokenizerSmall(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = HybridTokenizer(SMALL_VAE, SMALL_Q)

    def test_shapes(self):
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        f = self.model.encode_continuous(x)
        self.assertEqual(tuple(f.shape), (2, 8, 8, 8))
        img = self.model.decode(f)
        self.assertEqual(tuple(img.shape), (2, 3, 32, 32))
        self.assertLessEqual(img.abs().max().item(), 1.0)
        unit = self.model.decode_unit(f)
        self.assertGreaterEqual(unit.min().item(), 0.0)
        self.assertLessEqual(unit.max().item(), 1.0)

    def test_forward_backward_discrete_and_continuous(self):
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        for prob, expect_continuous in ((1.0, False), (0.0, True)):
            self.model.zero_grad()
            rec, vq_loss, idx_list, used = self.model(x, skip_continuous_prob=prob)
            self.assertEqual(used, expect_continuous)
            loss = F.mse_loss(rec, x) + vq_loss
            loss.backward()
            self.assertTrue(torch.isfinite(loss))
            self.assertGreater(self.model.decoder.conv_out.weight.grad.abs().sum().item(), 0)
            self.assertGreater(self.model.encoder.conv_in.weight.grad.abs().sum().item(), 0)
            self.assertEqual([tuple(i.shape) for i in idx_list], [(2, p, p) for p in SMALL_Q.patch_nums])

    def test_continuous_path_decodes_f_discrete_path_decodes_fhat(self):
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        with torch.no_grad():
            f = self.model.encode_continuous(x)
            _, f_hat, _ = self.model.quantize.encode_indices(f)
            rec_c, _, _, _ = self.model(x, skip_continuous_prob=0.0)
            rec_d, _, _, _ = self.model(x, skip_continuous_prob=1.0)
        self.assertLess((rec_c - self.model.decode_raw(f)).abs().max().item(), 1e-5)
        self.assertLess((rec_d - self.model.decode_raw(f_hat)).abs().max().item(), 1e-4)

    def test_checkpoint_key_layout(self):
        keys = set(self.model.state_dict().keys())
        for key in ("encoder.down.0.block.0.norm1.weight", "encoder.down.0.downsample.conv.weight",
                    "encoder.down.2.attn.0.qkv.weight", "encoder.mid.attn_1.proj_out.bias",
                    "encoder.down.1.block.0.nin_shortcut.weight", "quant_conv.weight",
                    "quantize.embedding.weight", "quantize.quant_resi.qresi_ls.3.bias", "post_quant_conv.bias",
                    "decoder.conv_in.weight", "decoder.up.2.attn.1.norm.weight", "decoder.up.1.upsample.conv.weight",
                    "decoder.up.0.block.0.nin_shortcut.weight", "decoder.norm_out.weight", "decoder.conv_out.bias"):
            self.assertIn(key, keys)
        self.assertNotIn("decoder.up.0.upsample.conv.weight", keys)   # full resolution level has no upsample
        self.assertNotIn("encoder.down.2.downsample.conv.weight", keys)  # lowest level has no downsample
        self.assertNotIn("decoder.up.0.block.1.nin_shortcut.weight", keys)  # only channel-changing blocks
        self.assertFalse(any(k.startswith("decoder.up.0.attn") for k in keys))

    def test_decoder_exports_without_norm_or_resize_ops(self):
        buf = io.BytesIO()
        torch.onnx.export(self.model.decoder, torch.randn(1, 8, 8, 8), buf, opset_version=17,
                          input_names=["z"], output_names=["image"])
        graph = onnx.load_from_string(buf.getvalue())
        onnx.checker.check_model(graph)
        ops = {n.op_type for n in graph.graph.node}
        self.assertNotIn("InstanceNormalization", ops)
        self.assertNotIn("Resize", ops)


class PublishedDecoderSize(unittest.TestCase):
    def test_parameter_count(self):
        # docs/hart.md §11.1: decoder ≈ 64.65M for ch=160, ch_mult=(1,1,2,2,4), 2 res blocks, z=32.
        dec = Decoder(VaeConfig(image_size=1024, ch=160, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=32))
        self.assertEqual(count(dec), 64_653_923)


if __name__ == "__main__":
    unittest.main()
