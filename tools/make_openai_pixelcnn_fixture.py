"""Write small TensorFlow checkpoints laid out exactly like openai/pixel-cnn's (test fixtures).

Needs TensorFlow (`pip install tensorflow-cpu` in a separate environment; tractable itself
never imports it). Rebuilds, in TF1 graph mode, the PixelCNN++ graph of openai/pixel-cnn
(`pixel_cnn_pp/model.py`, `nn.py`) and the parts of its `train.py` that create variables:
`tf.make_template('model', ...)`, the data-dependent init pass, the Polyak averages
(`tf.train.ExponentialMovingAverage`), its own Adam (`nn.adam_updates`, whose name strings
land in `tf.Variable`'s `trainable` argument) and, for a conditional model, the sampler's
label variables. It then runs the init pass and a few training steps on random images and
saves with `tf.train.Saver` (the V2 bundle: `.index` + `.data-00000-of-00001`).

Writes, per small config, into OUT/<name>/:
  params.ckpt.index, params.ckpt.data-00000-of-00001   the checkpoint
  expected.npz   every saved variable's value as TF holds it (key = variable name), and
                 the network outputs and per-image NLLs of the Polyak (`ema_*`) and raw
                 (`raw_*`) weights on a fixed batch (`images`, `labels`)
and OUT/paper_variables.json: name -> shape of every variable the paper-size graph
(nr_resnet 5, nr_filters 160, nr_logistic_mix 10, CIFAR-10) saves.

    python tools/make_openai_pixelcnn_fixture.py --out tests/fixtures/openai_pixelcnn
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_v2_behavior()

EMA_DECAY = 0.9  # train.py uses 0.9995; a small decay makes the averages differ visibly


# ---- layers (openai/pixel-cnn nn.py semantics, NHWC) ----------------------------------
class Names:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str) -> str:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        return f"{kind}_{n}"


def param(name, shape, init, ema):
    v = tf1.get_variable(name, shape=shape, dtype=tf.float32, initializer=init, trainable=True)
    return ema.average(v) if ema is not None else v


def wn_vars(shape, units, ema):
    v = param("V", shape, tf1.random_normal_initializer(0, 0.05), ema)
    g = param("g", [units], tf1.constant_initializer(1.0), ema)
    b = param("b", [units], tf1.constant_initializer(0.0), ema)
    return v, g, b


def data_init(out_fn, g, b, init, init_scale, axes):
    """Weight-norm data-dependent init: rescale g, shift b, recompute the output."""
    x = out_fn()
    if not init:
        return x
    mean, var = tf.nn.moments(x, axes)
    scale = init_scale / tf.sqrt(var + 1e-10)
    with tf.control_dependencies([g.assign(g * scale), b.assign_add(-mean * scale)]):
        return out_fn()


def dense(x, units, names, ema, init, init_scale=1.0):
    with tf1.variable_scope(names("dense")):
        v, g, b = wn_vars([int(x.shape[1]), units], units, ema)

        def out():
            return (tf.matmul(x, v) * tf.reshape(g / tf.sqrt(tf.reduce_sum(v * v, [0])), [1, -1])
                    + tf.reshape(b, [1, -1]))
        return data_init(out, g, b, init, init_scale, [0])


def nin(x, units, names, ema, init, init_scale=1.0):
    s = [int(d) for d in x.shape]
    y = dense(tf.reshape(x, [-1, s[-1]]), units, names, ema, init, init_scale)
    return tf.reshape(y, s[:-1] + [units])


def conv2d(x, units, size, stride, names, ema, init, init_scale=1.0):
    with tf1.variable_scope(names("conv2d")):
        v, g, b = wn_vars(size + [int(x.shape[-1]), units], units, ema)

        def out():
            w = tf.reshape(g, [1, 1, 1, units]) * tf.nn.l2_normalize(v, [0, 1, 2])
            return tf.nn.bias_add(tf.nn.conv2d(x, w, [1] + stride + [1], "VALID"), b)
        return data_init(out, g, b, init, init_scale, [0, 1, 2])


def deconv2d(x, units, size, stride, names, ema, init):
    n, h, w, _ = [int(d) for d in x.shape]
    target = [n, h * stride[0] + size[0] - 1, w * stride[1] + size[1] - 1, units]
    with tf1.variable_scope(names("deconv2d")):
        v, g, b = wn_vars(size + [units, int(x.shape[-1])], units, ema)

        def out():
            wt = tf.reshape(g, [1, 1, units, 1]) * tf.nn.l2_normalize(v, [0, 1, 3])
            y = tf.nn.conv2d_transpose(x, wt, target, [1] + stride + [1], padding="VALID")
            return tf.nn.bias_add(y, b)
        return data_init(out, g, b, init, 1.0, [0, 1, 2])


def down_shift(x):
    return tf.pad(x, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


def right_shift(x):
    return tf.pad(x, [[0, 0], [0, 0], [1, 0], [0, 0]])[:, :, :-1]


def ds_conv(x, units, ctx, size=(2, 3), stride=(1, 1), init_scale=1.0):
    kh, kw = size
    x = tf.pad(x, [[0, 0], [kh - 1, 0], [(kw - 1) // 2, (kw - 1) // 2], [0, 0]])
    return conv2d(x, units, list(size), list(stride), *ctx, init_scale)


def drs_conv(x, units, ctx, size=(2, 2), stride=(1, 1), init_scale=1.0):
    kh, kw = size
    x = tf.pad(x, [[0, 0], [kh - 1, 0], [kw - 1, 0], [0, 0]])
    return conv2d(x, units, list(size), list(stride), *ctx, init_scale)


def ds_deconv(x, units, ctx, size=(2, 3)):
    y = deconv2d(x, units, list(size), [2, 2], *ctx)
    h, w = int(y.shape[1]), int(y.shape[2])
    c = (size[1] - 1) // 2
    return y[:, :h - size[0] + 1, c:w - c]


def drs_deconv(x, units, ctx, size=(2, 2)):
    y = deconv2d(x, units, list(size), [2, 2], *ctx)
    h, w = int(y.shape[1]), int(y.shape[2])
    return y[:, :h - size[0] + 1, :w - size[1] + 1]


def concat_elu(x):
    return tf.nn.elu(tf.concat([x, -x], 3))


def gated_resnet(x, conv, ctx, h, dropout_p, a=None):
    names, ema, init = ctx
    f = int(x.shape[-1])
    c1 = conv(concat_elu(x), f, ctx)
    if a is not None:
        c1 += nin(concat_elu(a), f, names, ema, init)
    c1 = concat_elu(c1)
    if dropout_p > 0:
        c1 = tf.nn.dropout(c1, rate=dropout_p)
    c2 = conv(c1, 2 * f, ctx, init_scale=0.1)
    if h is not None:
        with tf1.variable_scope(names("conditional_weights")):
            hw = param("hw", [int(h.shape[-1]), 2 * f],
                       tf1.random_normal_initializer(0, 0.05), ema)
        if init:
            hw = hw.initialized_value()
        c2 += tf.reshape(tf.matmul(h, hw), [-1, 1, 1, 2 * f])
    value, gate = tf.split(c2, 2, 3)
    return x + value * tf.nn.sigmoid(gate)


def model_spec(x, h=None, init=False, ema=None, dropout_p=0.5, nr_resnet=5, nr_filters=160,
               nr_logistic_mix=10):
    ctx = (Names(), ema, init)
    f = nr_filters
    x_pad = tf.concat([x, tf.ones_like(x[..., :1])], 3)
    u_list = [down_shift(ds_conv(x_pad, f, ctx, (2, 3)))]
    ul_list = [down_shift(ds_conv(x_pad, f, ctx, (1, 3)))
               + right_shift(drs_conv(x_pad, f, ctx, (2, 1)))]
    for level in range(3):
        if level > 0:
            u_list.append(ds_conv(u_list[-1], f, ctx, stride=(2, 2)))
            ul_list.append(drs_conv(ul_list[-1], f, ctx, stride=(2, 2)))
        for _ in range(nr_resnet):
            u_list.append(gated_resnet(u_list[-1], ds_conv, ctx, h, dropout_p))
            ul_list.append(gated_resnet(ul_list[-1], drs_conv, ctx, h, dropout_p, a=u_list[-1]))
    u, ul = u_list.pop(), ul_list.pop()
    for stage in range(3):
        if stage > 0:
            u = ds_deconv(u, f, ctx)
            ul = drs_deconv(ul, f, ctx)
        for _ in range(nr_resnet + (stage > 0)):
            u = gated_resnet(u, ds_conv, ctx, h, dropout_p, a=u_list.pop())
            ul = gated_resnet(ul, drs_conv, ctx, h, dropout_p,
                              a=tf.concat([u, ul_list.pop()], 3))
    assert not u_list and not ul_list
    return nin(tf.nn.elu(ul), 10 * nr_logistic_mix, *ctx)


def mixture_nll(x, params):
    """Per-image NLL (nats) of openai's discretized logistic mixture; x in [-1, 1]."""
    b, hh, ww, c = [int(d) for d in x.shape]
    m = int(params.shape[-1]) // 10
    logits = params[..., :m]
    rest = tf.reshape(params[..., m:], [b, hh, ww, c, 3 * m])
    means, log_s = rest[..., :m], tf.maximum(rest[..., m:2 * m], -7.0)
    coeffs = tf.tanh(rest[..., 2 * m:])
    xe = tf.reshape(x, [b, hh, ww, c, 1]) + tf.zeros([b, hh, ww, c, m])
    m1 = means[:, :, :, 0:1]
    m2 = means[:, :, :, 1:2] + coeffs[:, :, :, 0:1] * xe[:, :, :, 0:1]
    m3 = (means[:, :, :, 2:3] + coeffs[:, :, :, 1:2] * xe[:, :, :, 0:1]
          + coeffs[:, :, :, 2:3] * xe[:, :, :, 1:2])
    centered = xe - tf.concat([m1, m2, m3], 3)
    inv = tf.exp(-log_s)
    plus, minus = inv * (centered + 1 / 255), inv * (centered - 1 / 255)
    delta = tf.sigmoid(plus) - tf.sigmoid(minus)
    mid = inv * centered
    log_mid = mid - log_s - 2 * tf.nn.softplus(mid) - np.log(127.5)
    lp = tf.where(xe < -0.999, plus - tf.nn.softplus(plus),
                  tf.where(xe > 0.999, -tf.nn.softplus(minus),
                           tf.where(delta > 1e-5, tf.math.log(tf.maximum(delta, 1e-12)), log_mid)))
    lp = tf.reduce_sum(lp, 3) + tf.nn.log_softmax(logits, -1)
    return -tf.reduce_sum(tf.reduce_logsumexp(lp, -1), [1, 2])


def adam_updates(params, grads, lr, mom1=0.95, mom2=0.9995):
    """openai's Adam; the strings go to `trainable`, so the slots are named `Variable_N`."""
    updates = []
    t = tf1.Variable(1.0, "adam_t")
    for p, g in zip(params, grads, strict=True):
        mg = tf1.Variable(tf.zeros(p.shape), p.name + "_adam_mg")
        v = tf1.Variable(tf.zeros(p.shape), p.name + "_adam_v")
        v_t = mom1 * v + (1 - mom1) * g
        mg_t = mom2 * mg + (1 - mom2) * tf.square(g)
        step = (v_t / (1 - tf.pow(mom1, t))) / tf.sqrt(mg_t / (1 - tf.pow(mom2, t)) + 1e-8)
        updates += [v.assign(v_t), mg.assign(mg_t), p.assign(p - lr * step)]
    updates.append(t.assign_add(1))
    return tf.group(*updates)


def build(opts, batch, shape, num_labels, lr=1e-3):
    """train.py's variable-creating graph; returns the tensors the fixture needs."""
    x_init = tf1.placeholder(tf.float32, [batch, *shape])
    x = tf1.placeholder(tf.float32, [batch, *shape])
    y = tf1.placeholder(tf.int32, [batch])
    h_init = h = None
    if num_labels:
        h_init = h = tf.one_hot(y, num_labels)
        # the sampler's labels: another unnamed tf.Variable, saved as Variable, Variable_1...
        tf1.Variable(np.arange(batch) % num_labels, trainable=False)
    model = tf1.make_template("model", model_spec)
    init_pass = model(x_init, h_init, init=True, dropout_p=0.5, **opts)
    params = tf1.trainable_variables()
    ema = tf1.train.ExponentialMovingAverage(decay=EMA_DECAY)
    keep_averages = ema.apply(params)
    train_out = model(x, h, ema=None, dropout_p=0.5, **opts)
    loss = tf.reduce_sum(mixture_nll(x, train_out))
    grads = tf.gradients(loss, params)
    raw_out = model(x, h, ema=None, dropout_p=0.0, **opts)
    ema_out = model(x, h, ema=ema, dropout_p=0.0, **opts)
    step = tf.group(adam_updates(params, grads, lr), keep_averages)
    return dict(x_init=x_init, x=x, y=y, init_pass=init_pass, step=step, raw_out=raw_out,
                ema_out=ema_out, raw_nll=mixture_nll(x, raw_out), ema_nll=mixture_nll(x, ema_out))


def write_small(out: Path, num_labels: int, seed: int) -> None:
    tf1.reset_default_graph()
    tf1.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    opts = dict(nr_resnet=1, nr_filters=4, nr_logistic_mix=2)
    batch, shape = 4, (8, 8, 3)
    g = build(opts, batch, shape, num_labels)
    saver = tf1.train.Saver()

    def scaled(images):
        return (images.astype(np.float32) - 127.5) / 127.5

    def feed(images, labels, key="x"):
        d = {g[key]: scaled(images)}
        if num_labels:
            d[g["y"]] = labels
        return d

    with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        labels = rng.randint(0, max(num_labels, 1), batch).astype(np.int32)
        sess.run(g["init_pass"], feed(rng.randint(0, 256, (batch, *shape)), labels, "x_init"))
        for _ in range(5):
            sess.run(g["step"], feed(rng.randint(0, 256, (batch, *shape)), labels))
        out.mkdir(parents=True, exist_ok=True)
        saver.save(sess, str(out / "params.ckpt"), write_meta_graph=False, write_state=False)
        values = sess.run({v.op.name: v for v in tf1.global_variables()})
        images = rng.randint(0, 256, (batch, *shape)).astype(np.uint8)
        labels = rng.randint(0, max(num_labels, 1), batch).astype(np.int32)
        outs = sess.run({k: g[k] for k in ("raw_out", "ema_out", "raw_nll", "ema_nll")},
                        feed(images, labels))
    np.savez_compressed(out / "expected.npz", images=images, labels=labels, **outs,
                        **{f"var:{k}": v for k, v in values.items()})
    (out / "params.ckpt.index").stat()
    print(f"{out}: {len(values)} variables")


def _one_per_line(table: dict) -> str:
    rows = [f"{json.dumps(k)}: {json.dumps(table[k])}" for k in sorted(table)]
    return "{\n" + ",\n".join(rows) + "\n}\n"


def write_paper_table(path: Path) -> None:
    tf1.reset_default_graph()
    build(dict(nr_resnet=5, nr_filters=160, nr_logistic_mix=10), 1, (32, 32, 3), 0)
    table = {v.op.name: [int(d) for d in v.shape] for v in tf1.global_variables()}
    path.write_text(_one_per_line(table))
    print(f"{path}: {len(table)} variables")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures/openai_pixelcnn")
    args = parser.parse_args()
    out = Path(args.out)
    write_small(out / "small", num_labels=0, seed=1)
    write_small(out / "small_conditional", num_labels=3, seed=2)
    write_paper_table(out / "paper_variables.json")


if __name__ == "__main__":
    main()
