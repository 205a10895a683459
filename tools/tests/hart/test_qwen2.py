import math
import unittest

import torch

from hart.qwen2 import Qwen2Config, Qwen2Model, Qwen2TextEncoder

TINY = dict(model_type="qwen2", vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
            hidden_act="silu", max_position_embeddings=128)


def _random_model(config: Qwen2Config, seed: int) -> Qwen2Model:
    torch.manual_seed(seed)
    model = Qwen2Model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)  # norms and biases random too, so every term is exercised
    return model.eval()


def _reference(model: Qwen2Model, ids, mask):
    """Qwen2 written out position by position and head by head, in float64."""
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    hd = cfg.head_dim
    groups = cfg.num_attention_heads // cfg.num_key_value_heads

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean() + cfg.rms_norm_eps)

    def rotate(vec, pos):
        out = vec.clone()
        for j in range(hd // 2):
            angle = pos * cfg.rope_theta ** (-2.0 * j / hd)
            a, b = vec[j], vec[j + hd // 2]
            out[j] = a * math.cos(angle) - b * math.sin(angle)
            out[j + hd // 2] = b * math.cos(angle) + a * math.sin(angle)
        return out

    batch, seq = ids.shape
    result = torch.zeros(batch, seq, cfg.hidden_size, dtype=torch.float64)
    for b in range(batch):
        xs = [sd["embed_tokens.weight"][ids[b, i]] for i in range(seq)]
        for layer in range(cfg.num_hidden_layers):
            p = f"layers.{layer}."
            hs = [rms(x, sd[p + "input_layernorm.weight"]) for x in xs]
            lin = lambda name, h: sd[p + name + ".weight"] @ h + sd[p + name + ".bias"]
            qs = [lin("self_attn.q_proj", h) for h in hs]
            ks = [lin("self_attn.k_proj", h) for h in hs]
            vs = [lin("self_attn.v_proj", h) for h in hs]
            new = []
            for i in range(seq):
                heads_out = []
                for head in range(cfg.num_attention_heads):
                    kv = head // groups
                    q = rotate(qs[i][head * hd:(head + 1) * hd], i)
                    visible = [j for j in range(i + 1) if mask[b, j]]
                    scores = torch.stack([q @ rotate(ks[j][kv * hd:(kv + 1) * hd], j) for j in visible]) / math.sqrt(hd)
                    w = torch.softmax(scores, 0)
                    heads_out.append(sum(w[n] * vs[j][kv * hd:(kv + 1) * hd] for n, j in enumerate(visible)))
                attn = sd[p + "self_attn.o_proj.weight"] @ torch.cat(heads_out)
                x = xs[i] + attn
                h2 = rms(x, sd[p + "post_attention_layernorm.weight"])
                gate = sd[p + "mlp.gate_proj.weight"] @ h2
                up = sd[p + "mlp.up_proj.weight"] @ h2
                x = x + sd[p + "mlp.down_proj.weight"] @ (gate * torch.sigmoid(gate) * up)
                new.append(x)
            xs = new
        for i in range(seq):
            result[b, i] = rms(xs[i], sd["norm.weight"])
    return result


class Qwen2Test(unittest.TestCase):
    def test_matches_per_head_reference_with_padding(self):
        config = Qwen2Config.from_hf(TINY)
        model = _random_model(config, 0)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, config.vocab_size, (2, 7), generator=g)
        mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
        with torch.no_grad():
            ours = model(ids, mask).double()
        ref = _reference(model, ids, mask)
        self.assertLess((ours - ref).abs().max().item(), 1e-4 * ref.abs().max().item())

    def test_padding_keys_are_invisible(self):
        config = Qwen2Config.from_hf(TINY)
        model = _random_model(config, 2)
        ids = torch.tensor([[3, 9, 4, 7, 7, 7]])
        other = torch.tensor([[3, 9, 4, 11, 12, 13]])
        mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
        with torch.no_grad():
            a = model(ids, mask)
            b = model(other, mask)
            unpadded = model(ids[:, :3], mask[:, :3])
        # Real positions ignore what the padding holds, and equal a run without the padding.
        self.assertTrue(torch.allclose(a[:, :3], b[:, :3], atol=1e-6))
        self.assertTrue(torch.allclose(a[:, :3], unpadded, atol=1e-6))
        # Padding queries still produce (different) states: HART uses them.
        self.assertFalse(torch.allclose(a[:, 3:], b[:, 3:], atol=1e-3))

    def test_text_encoder_wrapper_takes_int32(self):
        config = Qwen2Config.from_hf(TINY)
        model = _random_model(config, 3)
        ids = torch.tensor([[1, 2, 3, 4]], dtype=torch.int32)
        mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.int32)
        with torch.no_grad():
            out = Qwen2TextEncoder(model)(ids, mask)
            expected = model(ids.long(), mask.long())
        self.assertEqual(tuple(out.shape), (1, 4, config.hidden_size))
        self.assertTrue(torch.equal(out, expected))

    def test_config_validation(self):
        with self.assertRaisesRegex(ValueError, "model_type"):
            Qwen2Config.from_hf({**TINY, "model_type": "llama"})
        with self.assertRaisesRegex(ValueError, "rope_theta"):
            Qwen2Config.from_hf({k: v for k, v in TINY.items() if k != "rope_theta"})
        with self.assertRaisesRegex(ValueError, "use_sliding_window"):
            Qwen2Config.from_hf({**TINY, "use_sliding_window": True})
        with self.assertRaisesRegex(ValueError, "rope_scaling"):
            Qwen2Config.from_hf({**TINY, "rope_scaling": {"type": "mrope"}})
        with self.assertRaisesRegex(ValueError, "divide"):
            Qwen2Config.from_hf({**TINY, "num_key_value_heads": 3})
        self.assertEqual(Qwen2Config.from_hf(Qwen2Config.from_hf(TINY).to_hf()), Qwen2Config.from_hf(TINY))


if __name__ == "__main__":
    unittest.main()
