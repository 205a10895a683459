import math
import unittest

import torch

from hart.config import CONFIGS, HartConfig, get_config
from hart.model import randomize_
from hart.rope import image_rope, text_positions, text_rope
from hart.transformer import Attention, HartTransformer, count_parameters


def tiny_model(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return randomize_(HartTransformer(get_config("tiny")), gen).eval()


def scale_input_length(config):
    return sum(pn * pn for pn in config.patch_nums[1:])


class ConfigTest(unittest.TestCase):
    def test_round_trip(self):
        for name, config in CONFIGS.items():
            self.assertEqual(HartConfig.from_dict(config.to_dict()), config, name)

    def test_attention_scale_is_harts_unless_configured(self):
        import dataclasses
        config = get_config("tiny")
        self.assertEqual(config.attention_scale, 0.25)
        old = config.to_dict()
        del old["attention_scale"]            # checkpoints written before the field existed
        self.assertEqual(HartConfig.from_dict(old).attention_scale, 0.25)
        sharp = dataclasses.replace(config, attention_scale=1.0)
        self.assertEqual(HartConfig.from_dict(sharp.to_dict()), sharp)
        attn = HartTransformer(sharp).blocks[0].attn
        self.assertAlmostEqual(attn.scale, 1.0 / math.sqrt(sharp.head_dim))
        self.assertAlmostEqual(HartTransformer(config).blocks[0].attn.scale, 0.25 / math.sqrt(config.head_dim))

    @torch.no_grad()
    def test_fused_step_follows_the_configured_scale(self):
        import dataclasses
        config = dataclasses.replace(get_config("tiny"), attention_scale=1.0)
        t = randomize_(HartTransformer(config), torch.Generator().manual_seed(3)).eval()
        g = torch.Generator().manual_seed(4)
        n, length, p = 2, 5, 7
        x = torch.randn(n, length, config.width, generator=g)
        cos, sin = torch.randn(n, length, config.head_dim, generator=g), torch.randn(n, length, config.head_dim, generator=g)
        past = [tuple(torch.randn(n, config.heads, p, config.head_dim, generator=g) for _ in range(2))
                for _ in range(config.depth)]
        plain, _ = t.step(x, cos, sin, past)
        fused, _ = t.step(x, cos, sin, past, fused=True)
        self.assertLess((plain - fused).abs().max().item(), 1e-5)
        t.blocks[0].attn.scale *= 0.25
        self.assertGreater((t.step(x, cos, sin, past)[0] - plain).abs().max().item(), 1e-4)

    def test_mlp_hidden_follows_hart(self):
        self.assertEqual(get_config("hart-0.7b-1024px").mlp_hidden, 4096)
        self.assertEqual(get_config("shapes-128").mlp_hidden, 1024)

    def test_inconsistent_config_is_rejected(self):
        data = get_config("tiny").to_dict()
        data["heads"] = 3
        with self.assertRaises(ValueError):
            HartConfig.from_dict(data)


class ParameterTest(unittest.TestCase):
    def test_published_parameter_count(self):
        # docs/hart.md §12.1: transformer + diffusion head, without tokenizer and text encoder.
        self.assertEqual(count_parameters(get_config("hart-0.7b-1024px")), 732_399_168)

    def test_published_key_names(self):
        config = get_config("tiny")
        c, cv, d, v, hidden = config.width, config.latent_channels, config.context_dim, config.vocab_size, config.mlp_hidden
        shapes = {k: tuple(p.shape) for k, p in HartTransformer(config).state_dict().items()}
        expected = {
            "word_embed.weight": (c, cv), "word_embed.bias": (c,),
            "context_norm.weight": (d,), "context_embed.weight": (c, d), "context_embed.bias": (c,),
            "lvl_embed.mlp.0.weight": (c, 256), "lvl_embed.mlp.0.bias": (c,),
            "lvl_embed.mlp.2.weight": (c, c), "lvl_embed.mlp.2.bias": (c,),
            "head_nm.ln_wo_grad.weight": (c,), "head_nm.ada_lin.1.weight": (2 * c, c),
            "head_nm.ada_lin.1.bias": (2 * c,), "head.weight": (v, c), "head.bias": (v,),
            "decoder_norm.weight": (c,),
        }
        for i in range(config.depth):
            expected.update({
                f"blocks.{i}.ln_wo_grad.weight": (c,),
                f"blocks.{i}.attn.qkv_proj.weight": (3 * c, c),
                f"blocks.{i}.attn.q_bias": (c,), f"blocks.{i}.attn.v_bias": (c,),
                f"blocks.{i}.attn.proj.weight": (c, c), f"blocks.{i}.attn.proj.bias": (c,),
                f"blocks.{i}.ffn.gate_proj.weight": (hidden, c), f"blocks.{i}.ffn.up_proj.weight": (hidden, c),
                f"blocks.{i}.ffn.down_proj.weight": (c, hidden),
            })
        own = {k: s for k, s in shapes.items() if not k.startswith("diffloss.")}
        self.assertEqual(own, expected)
        self.assertTrue(any(k.startswith("diffloss.net.") for k in shapes))


class AttentionTest(unittest.TestCase):
    def test_softmax_scale_and_biases(self):
        torch.manual_seed(0)
        attn = randomize_(Attention(16, 2), torch.Generator().manual_seed(3))
        x = torch.randn(1, 3, 16)
        cos, sin = torch.ones(1, 3, 8), torch.zeros(1, 3, 8)
        out, _ = attn(x, cos, sin)
        # Reference by hand: q/v biases, no k bias, per-head softmax at 0.25/sqrt(hd).
        w = attn.qkv_proj.weight
        q = x[0] @ w[:16].t() + attn.q_bias
        k = x[0] @ w[16:32].t()
        v = x[0] @ w[32:].t() + attn.v_bias
        heads = []
        for h in range(2):
            sl = slice(8 * h, 8 * h + 8)
            p = torch.softmax(q[:, sl] @ k[:, sl].t() * (0.25 / math.sqrt(8)), dim=-1)
            heads.append(p @ v[:, sl])
        ref = torch.cat(heads, dim=-1) @ attn.proj.weight.t() + attn.proj.bias
        self.assertLess((out[0] - ref).abs().max().item(), 1e-5)


class TransformerTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(1)
        self.model = tiny_model()
        self.config = self.model.config
        c = self.config
        self.n_valid = [5, c.context_tokens]
        self.context = torch.randn(2, c.context_tokens, c.context_dim)
        self.inputs = torch.randn(2, scale_input_length(c), c.latent_channels)

    def cached_logits(self, context, n_valid, inputs):
        model, c = self.model, self.config
        x, head_cond = model.condition(context)
        cos, sin = text_rope(text_positions(n_valid, c.context_tokens), c.head_dim, c.rope_theta)
        hidden, past = model.step(x, cos, sin)
        logits = [model.logits(hidden[:, -1:], head_cond)]
        levels = model.level_table()
        start = 0
        for k, pn in enumerate(c.patch_nums[1:], start=1):
            x = model.scale_input(inputs[:, start:start + pn * pn], levels[k])
            start += pn * pn
            cos, sin = image_rope(pn, c.latent_side, [n - 1 for n in n_valid], c.head_dim, c.rope_theta)
            hidden, past = model.step(x, cos, sin, past)
            logits.append(model.logits(hidden, head_cond))
        return torch.cat(logits, dim=1), hidden

    @torch.no_grad()
    def test_kv_cached_steps_equal_block_causal_forward(self):
        full, last_hidden = self.model.forward_train(self.context, self.n_valid, self.inputs)
        cached, cached_hidden = self.cached_logits(self.context, self.n_valid, self.inputs)
        c = self.config
        self.assertEqual(tuple(full.shape), (2, sum(pn * pn for pn in c.patch_nums), c.vocab_size))
        rel = (full - cached).abs().max() / full.abs().max()
        self.assertLess(rel.item(), 1e-5)
        self.assertLess(((last_hidden - cached_hidden).abs().max() / last_hidden.abs().max()).item(), 1e-5)

    @torch.no_grad()
    def test_block_causality(self):
        # Changing the last scale's inputs leaves every earlier scale's logits unchanged.
        full, _ = self.model.forward_train(self.context, self.n_valid, self.inputs)
        changed = self.inputs.clone()
        last = self.config.latent_side ** 2
        changed[:, -last:] += 1.0
        full2, _ = self.model.forward_train(self.context, self.n_valid, changed)
        self.assertTrue(torch.allclose(full[:, :-last], full2[:, :-last], atol=1e-6))
        self.assertFalse(torch.allclose(full[:, -last:], full2[:, -last:], atol=1e-3))

    @torch.no_grad()
    def test_padding_slots_are_attended(self):
        # HART never masks padding text tokens: their features change the image logits.
        full, _ = self.model.forward_train(self.context, self.n_valid, self.inputs)
        changed = self.context.clone()
        changed[0, -1] += 1.0                      # a padding slot of row 0 (n = 5)
        full2, _ = self.model.forward_train(changed, self.n_valid, self.inputs)
        self.assertFalse(torch.allclose(full[0, 1:], full2[0, 1:], atol=1e-4))

    @torch.no_grad()
    def test_null_condition_is_the_context_embed_bias(self):
        model = self.model
        zeros = torch.zeros(1, self.config.context_tokens, self.config.context_dim)
        x, head_cond = model.condition(zeros)
        level0 = model.level_table()[0]
        bias = model.context_embed.bias
        self.assertLess((x[0] - (bias + level0)).abs().max().item(), 1e-6)
        ref = model.head_nm.ada_lin(bias[None])
        self.assertLess((head_cond - ref).abs().max().item(), 1e-6)

    @torch.no_grad()
    def test_guided_logits(self):
        hidden = torch.randn(4, 3, self.config.width)
        head_cond = torch.randn(4, 2 * self.config.width)
        t = 1.7
        guided = self.model.guided_logits(hidden, head_cond, t)
        plain = self.model.logits(hidden, head_cond)
        ref = (1 + t) * plain[:2] - t * plain[2:]
        self.assertEqual(tuple(guided.shape), (2, 3, self.config.vocab_size))
        self.assertLess((guided - ref).abs().max().item(), 1e-5)

    @torch.no_grad()
    def test_diffusion_condition_uses_same_tokens_for_both_halves(self):
        model, c = self.model, self.config
        hidden = torch.randn(2, 5, c.width)
        tokens = torch.randn(1, 5, c.latent_channels)
        z = model.diffusion_condition(hidden, tokens)
        self.assertEqual(tuple(z.shape), (10, c.width))
        ref = model.decoder_norm(hidden[1] + model.word_embed(tokens[0]))
        self.assertLess((z[5:] - ref).abs().max().item(), 1e-6)

    def test_training_forward_backpropagates(self):
        logits, hidden = self.model.forward_train(self.context, self.n_valid, self.inputs)
        (logits.logsumexp(-1).mean() + hidden.square().mean()).backward()
        # decoder_norm and the diffusion head only see the diffusion loss, not this forward.
        grads = {n: p.grad for n, p in self.model.named_parameters()
                 if not n.startswith(("diffloss.", "decoder_norm."))}
        missing = [n for n, g in grads.items() if g is None or not torch.isfinite(g).all()]
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main()


class TextEncoderTest(unittest.TestCase):
    @torch.no_grad()
    def test_padding_keys_are_masked_but_padding_queries_have_states(self):
        from hart.text_encoder import TextEncoder
        config = get_config("tiny").text_encoder
        encoder = randomize_(TextEncoder(config), torch.Generator().manual_seed(2)).eval()
        ids = torch.tensor([[2, 9, 17, 0, 0, 0, 0, 0]], dtype=torch.int32)
        mask = (ids != 0).to(torch.int32)
        hidden = encoder(ids, mask)
        self.assertEqual(tuple(hidden.shape), (1, 8, config.width))
        other = ids.clone()
        other[0, 5] = 12                           # change a padding slot's id
        changed = encoder(other, mask)
        self.assertLess((changed[0, :3] - hidden[0, :3]).abs().max().item(), 1e-6)
        self.assertGreater((changed[0, 5] - hidden[0, 5]).abs().max().item(), 1e-3)
        # An empty prompt (everything masked) stays finite.
        self.assertTrue(torch.isfinite(encoder(ids * 0, mask * 0)).all())
