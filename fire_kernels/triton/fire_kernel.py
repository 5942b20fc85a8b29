"""The fused Fire in Triton (GPU; CPU tensors under TRITON_INTERPRET=1).

Math, with pixels p flattened over (image, row, column) and W the image width:
    s[p, c]        = relu(b_s[c] + sum_k x[p, k] W_s[c, k])                         squeeze
    out[p, e]      = relu(b_1[e] + sum_c s[p, c] W_1[e, c])                e < E1, expand 1x1
    out[p, E1 + e] = relu(b_3[e] + sum_{c,dy,dx} s[p + (dy-1)W + (dx-1), c] W_3[e, c, dy, dx])
where a 3x3 tap whose neighbour lies outside p's image (the zero padding) adds 0.
float32 accumulation; s is rounded to the input's dtype, as PyTorch's Fire does.

What runs (``launch.config_for`` picks the config, ``benchmarks/gpu_model.py`` counts
its bytes and MACs from the same function, ``benchmarks/gpu_resources.py`` compiles
every config for sm_90 and sm_80): two launches, every pixel's squeeze computed once.

* ``_squeeze_kernel``: one program a tile, its squeeze into a buffer holding the
  squeeze of every pixel, [S_BLOCKS, pixels rounded up to tiles, BLOCK_S].
* ``_expand_kernel``: tiles x e_split programs, each doing both expands of one tile for
  its share of the output-channel blocks (blocks e, e + e_split, ...; each share the
  same number of 1x1 and 3x3 blocks) from the buffer. ``config_for`` takes 128-pixel
  tiles and the widest channel blocks, and shrinks blocks (to 32) and then tiles (to
  16) until the grid covers twice the SMs, so batch 1 fills the GPU too.

Why two launches. The squeeze goes through memory either way: a Triton program cannot
shift a register tile by a run-time number of rows (the taps) and has no shared memory
to index. A fused persistent kernel (``_fire_fused_kernel``, removed after f2744a6)
kept each program's squeeze in a small ring reused along a band of tiles, so on paper
it moved the fewest HBM bytes; on an H200 in float16 (``benchmarks/tune_gpu.py``) the
two-phase plan was faster than every one of its 16 variants (64/128-pixel tiles, 4/8
warps, 2/3 stages, 1/2 programs an SM): v1_1 fire2 at batch 256 in 150 us against
170 us for the best fused variant, fire9 in 107 against 125 us. The buffer of a batch
of 256 is 4-25 MB in 16-bit types on every SqueezeNet layer but v1_0 fire4 (48 MB),
so much of it can stay in the H200's 50 MB L2 between the phases. It costs a second
launch; a grid-wide barrier between the phases in one launch would deadlock whenever
not all programs are resident.

* Tiles are BLOCK_M consecutive flat pixels, across rows and images: a 13x13 map is
  not padded to 16x16 or to whole 8x8 tiles, and tap (dy, dx) of a tile is the tile's
  squeeze rows shifted by (dy-1)W + (dx-1), one block of rows read with a mask for
  the zero padding.
* Weights are packed once per weight version (``launch.pack_triton_weights``) in the
  order tiles read them: W_s as [C, S], W_1 as [S, E1], W_3 as [9, S, E3], zero-padded
  to whole blocks, so every weight tile is rows of contiguous output channels
  (coalesced, unmasked) and no call copies a weight.
* Squeeze channels are blocks of 16 or 32 (16 in float32) that divide S rounded up to
  16: no SqueezeNet width is padded (48 runs as 3 x 16). Wider blocks, the K of every
  expand tl.dot, took 230-255 registers a thread in the fused kernel.
* Expands: per block of BLOCK_E output channels, the 1x1 as one tl.dot per squeeze
  block of the centre rows and the 3x3 as one per (tap, squeeze block) of the shifted
  rows, in loops Triton software-pipelines (num_stages); bias and ReLU in registers;
  stores straight into the output's channel slice (any strides: NCHW or channels
  last), so the concatenation is free.
* Block-sparse variant (BLOCK_LIST): per block of 16 output channels, the 3x3 steps
  only through the (tap, 16 squeeze channels) pairs listed as nonzero
  (``launch.block_list``), so block-pruned weights cost only their nonzero blocks.
* Not at the floor on paper: L2. Every expand program reads its channel share of the
  weights from L2, and its tile's squeeze rows once per output-channel block and tap
  (the pipelined loads are cp.async.cg, which bypass L1): ``gpu_model.py``'s last
  column counts it against the minimum HBM bytes.
Every tl.dot dimension is >= 16.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _relu(v):
    # NaN stays NaN, as in torch.relu.
    return tl.maximum(v, 0.0, propagate_nan=tl.PropagateNan.ALL)


# UPCAST marks bfloat16 under Triton 3.9's interpreter, whose bfloat16 is wrong in two
# ways the GPU's is not: tl.dot reads the raw 16-bit patterns, and float32 -> bfloat16
# truncates instead of rounding to nearest even (checked 2026-12 on triton 3.9.0).


@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    if UPCAST:  # operands widened first
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _to(v, dtype: tl.constexpr, UPCAST: tl.constexpr):
    """v (float32) in dtype, rounded to nearest even."""
    if UPCAST:  # the rounding done on the bits (NaN stays NaN)
        bits = v.to(tl.uint32, bitcast=True)
        bits += 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return v.to(dtype)


@triton.jit
def _pixels(q0, NHW, HW, W, ROWS: tl.constexpr):
    """The flat pixels q0 .. q0 + ROWS - 1: index, image, row, column, and whether
    they exist."""
    q = q0 + tl.arange(0, ROWS)
    n = q // HW
    r = q - n * HW
    h = r // W
    return q, n.to(tl.int64), h, r - h * W, q < NHW


@triton.jit
def _squeeze_kernel(
    x_ptr, ws_ptr, bs_ptr, s_ptr,
    NHW, HW, W, C, stride_xn, stride_xc, stride_xh, stride_xw, s_block_rows,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
    S_BLOCKS: tl.constexpr, S_PAD: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """Phase 1: relu(x W_s^T + b_s) of one tile's BLOCK_M pixels into their rows of
    the [S_BLOCKS, s_block_rows, BLOCK_S] squeeze buffer at s_ptr (rows rounded up to
    whole tiles, so the stores need no mask)."""
    q, n, h, w, ok = _pixels(tl.program_id(0) * BLOCK_M, NHW, HW, W, BLOCK_M)
    x_rows = x_ptr + n * stride_xn + h * stride_xh + w * stride_xw
    kj = tl.arange(0, BLOCK_C)
    sj = tl.arange(0, BLOCK_S)
    dst = s_ptr + q[:, None] * BLOCK_S + sj[None, :]
    for sb in range(S_BLOCKS):
        acc = tl.zeros((BLOCK_M, BLOCK_S), dtype=tl.float32)
        for k0 in range(0, C, BLOCK_C):
            kc = k0 + kj
            xt = tl.load(x_rows[:, None] + kc[None, :] * stride_xc,
                         mask=ok[:, None] & (kc[None, :] < C), other=0.0)
            # Packed [C_pad, S_PAD], zero beyond C: no mask.
            wt = tl.load(ws_ptr + kc[:, None] * S_PAD + (sb * BLOCK_S + sj)[None, :])
            acc = _dot(xt, wt, acc, PRECISION, UPCAST)
        acc += tl.load(bs_ptr + sb * BLOCK_S + sj)[None, :]
        s = _to(_relu(acc), s_ptr.dtype.element_ty, UPCAST)
        tl.store(dst + sb * s_block_rows * BLOCK_S, s)


@triton.jit
def _expand_kernel(
    s_ptr, w1_ptr, b1_ptr, w3_ptr, b3_ptr, out_ptr, list_ptr, counts_ptr,
    NHW, HW, H, W, E1, E3, stride_on, stride_oc, stride_oh, stride_ow, s_block_rows,
    BLOCK_M: tl.constexpr, BLOCK_S: tl.constexpr, S_BLOCKS: tl.constexpr, S_PAD: tl.constexpr,
    BLOCK_E: tl.constexpr, E1_PAD: tl.constexpr, E3_PAD: tl.constexpr,
    BLOCK_LIST: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """Phase 2: both expands of one tile's BLOCK_M pixels from the squeeze buffer, for
    this program's share of the output-channel blocks: pid_e, pid_e + e_split, ...
    (the grid's second axis splits them)."""
    q, n, h, w, ok = _pixels(tl.program_id(0) * BLOCK_M, NHW, HW, W, BLOCK_M)
    pid_e = tl.program_id(1)
    e_split = tl.num_programs(1)
    out_rows = out_ptr + n * stride_on + h * stride_oh + w * stride_ow
    sj = tl.arange(0, BLOCK_S)
    dtype = out_ptr.dtype.element_ty

    for eb in range(pid_e, tl.cdiv(E1, BLOCK_E), e_split):
        ec = eb * BLOCK_E + tl.arange(0, BLOCK_E)
        acc = tl.zeros((BLOCK_M, BLOCK_E), dtype=tl.float32)
        for sb in range(S_BLOCKS):
            sv = tl.load(s_ptr + (sb * s_block_rows + q)[:, None] * BLOCK_S + sj[None, :],
                         mask=ok[:, None], other=0.0)
            wt = tl.load(w1_ptr + (sb * BLOCK_S + sj)[:, None] * E1_PAD + ec[None, :])
            acc = _dot(sv, wt, acc, PRECISION, UPCAST)
        acc += tl.load(b1_ptr + ec)[None, :]
        tl.store(out_rows[:, None] + ec[None, :] * stride_oc, _to(_relu(acc), dtype, UPCAST),
                 mask=ok[:, None] & (ec[None, :] < E1))

    for eb in range(pid_e, tl.cdiv(E3, BLOCK_E), e_split):
        ec = eb * BLOCK_E + tl.arange(0, BLOCK_E)
        acc = tl.zeros((BLOCK_M, BLOCK_E), dtype=tl.float32)
        if BLOCK_LIST:
            count = tl.load(counts_ptr + eb)
        else:
            count = 9 * S_BLOCKS
        # One step per (tap, squeeze block), entry = tap * S_BLOCKS + block: all of
        # them, or the listed nonzero ones.
        for i in range(count):
            if BLOCK_LIST:
                entry = tl.load(list_ptr + eb * (9 * S_BLOCKS) + i)
            else:
                entry = i
            tap = entry // S_BLOCKS
            sb = entry - tap * S_BLOCKS
            dy = tap // 3 - 1
            dx = tap % 3 - 1
            inside = ok & (h + dy >= 0) & (h + dy < H) & (w + dx >= 0) & (w + dx < W)
            # The tile's rows shifted by the tap: pixel q's neighbour is q + dy W + dx.
            rows = q + dy * W + dx
            sv = tl.load(s_ptr + (sb * s_block_rows + rows)[:, None] * BLOCK_S + sj[None, :],
                         mask=inside[:, None], other=0.0)
            wt = tl.load(w3_ptr + (tap * S_PAD + sb * BLOCK_S + sj)[:, None] * E3_PAD + ec[None, :])
            acc = _dot(sv, wt, acc, PRECISION, UPCAST)
        acc += tl.load(b3_ptr + ec)[None, :]
        tl.store(out_rows[:, None] + (E1 + ec[None, :]) * stride_oc, _to(_relu(acc), dtype, UPCAST),
                 mask=ok[:, None] & (ec[None, :] < E3))
