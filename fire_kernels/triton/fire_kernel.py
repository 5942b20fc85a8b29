"""The fused Fire in Triton (GPU; CPU tensors under TRITON_INTERPRET=1).

Math, with pixels p flattened over (image, row, column) and W the image width:
    s[p, c]        = relu(b_s[c] + sum_k x[p, k] W_s[c, k])                         squeeze
    out[p, e]      = relu(b_1[e] + sum_c s[p, c] W_1[e, c])                e < E1, expand 1x1
    out[p, E1 + e] = relu(b_3[e] + sum_{c,dy,dx} s[p + (dy-1)W + (dx-1), c] W_3[e, c, dy, dx])
where a 3x3 tap whose neighbour lies outside p's image (the zero padding) adds 0.
float32 accumulation; s is rounded to the input's dtype, as PyTorch's Fire does.

Data movement. The floor is the input read once, the weights read once and the output
written once; the squeeze should never reach HBM and never be computed twice.
``launch.config_for`` picks the plan, ``benchmarks/gpu_model.py`` counts its bytes and
MACs from the same function (at batch 256 within 1.06x the minimum HBM bytes and
1.04x the MACs on every SqueezeNet layer; no squeeze computed twice at batch 1), and
``benchmarks/gpu_resources.py`` compiles every config for sm_90 and sm_80.

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
  expand tl.dot, took 230-255 registers a thread.
* The squeeze goes through memory because a Triton program cannot shift a register
  tile by a run-time number of rows (the taps), and has no shared memory to index;
  the memory is kept small and hot instead:
* Fused plan, ``_fire_fused_kernel`` (when every program gets at least two tiles): a
  persistent grid of ``PROGRAMS_PER_SM`` programs a SM. Each owns a band of
  consecutive tiles and a ring of RING_ROWS squeeze rows (a tile and W + 1 pixels each
  side, in whole 16-row chunks: 6-18 KB in 16-bit types) reused for the whole band, so
  the rings stay in L2 (1.6-4.9 MB in all) and cost HBM at most one write-back. The
  program computes each chunk of its band once, BLOCK_M rows at a time as it advances
  (one weight block serves BLOCK_M pixels); only the halo chunks at a band's start
  are also computed by the neighbouring band. Odd programs walk their band backwards, so
  the two programs at every band boundary read its input rows in the same step (both
  first or both last) and the second read hits L2. Two barriers a tile: after the
  ring writes (other threads read them) and after the expands (before the next tile
  overwrites rows they read).
* Two-phase plan, ``_squeeze_kernel`` then ``_expand_kernel`` (smaller batches, batch
  1 in particular): tiles are too few for bands, and splitting a tile's output
  channels over programs would make each recompute its squeeze. Instead the squeeze
  of every pixel is computed once into a buffer (at most a few hundred KB at batch 1,
  so it stays in L2), then tiles of down to 16 pixels times shares of 16-channel
  blocks (e_split programs a tile, each with the same number of 1x1 and 3x3 blocks)
  cover the GPU. It costs a second launch and the buffer's trip through L2; a
  grid-wide barrier between the phases in one launch would deadlock whenever not all
  programs are resident.
* Expands: per block of BLOCK_E output channels, the 1x1 as one tl.dot per squeeze
  block of the centre rows and the 3x3 as one per (tap, squeeze block) of the shifted
  rows, in loops Triton software-pipelines (num_stages); bias and ReLU in registers;
  stores straight into the output's channel slice (any strides: NCHW or channels
  last), so the concatenation is free.
* Block-sparse variant (BLOCK_LIST): per block of 16 output channels, the 3x3 steps
  only through the (tap, 16 squeeze channels) pairs listed as nonzero
  (``launch.block_list``), so block-pruned weights cost only their nonzero blocks.
* Not at the floor on paper: L2. Every tile reads all the weights from L2, and the
  squeeze rows once per output-channel block and tap (the pipelined loads are
  cp.async.cg, which bypass L1). At batch 256 that is 2-7x the minimum HBM bytes,
  the most on the 13x13 layers (``gpu_model.py``'s last column), against an L2 that
  is not measured yet. BLOCK_M 128 would halve the weight part at 218-240 registers
  a thread (4 warps), or 176-188 with 8. To be settled by measurement.
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
def _squeeze_rows(
    x_ptr, ws_ptr, bs_ptr, dst_ptr, q0, dst_block_rows,
    NHW, HW, W, C, stride_xn, stride_xc, stride_xh, stride_xw,
    ROWS: tl.constexpr, RING_ROWS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
    S_BLOCKS: tl.constexpr, S_PAD: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """relu(x W_s^T + b_s) of the pixels q0 .. q0 + ROWS - 1 into their rows
    (_squeeze_row_of) of the [S_BLOCKS, dst_block_rows, BLOCK_S] buffer at dst_ptr."""
    q, n, h, w, ok = _pixels(q0, NHW, HW, W, ROWS)
    x_rows = x_ptr + n * stride_xn + h * stride_xh + w * stride_xw
    kj = tl.arange(0, BLOCK_C)
    sj = tl.arange(0, BLOCK_S)
    dst = dst_ptr + _squeeze_row_of(q, RING_ROWS)[:, None] * BLOCK_S + sj[None, :]
    for sb in range(S_BLOCKS):
        acc = tl.zeros((ROWS, BLOCK_S), dtype=tl.float32)
        for k0 in range(0, C, BLOCK_C):
            kc = k0 + kj
            xt = tl.load(x_rows[:, None] + kc[None, :] * stride_xc,
                         mask=ok[:, None] & (kc[None, :] < C), other=0.0)
            # Packed [C_pad, S_PAD], zero beyond C: no mask.
            wt = tl.load(ws_ptr + kc[:, None] * S_PAD + (sb * BLOCK_S + sj)[None, :])
            acc = _dot(xt, wt, acc, PRECISION, UPCAST)
        acc += tl.load(bs_ptr + sb * BLOCK_S + sj)[None, :]
        s = _to(_relu(acc), dst_ptr.dtype.element_ty, UPCAST)
        tl.store(dst + sb * dst_block_rows * BLOCK_S, s)


@triton.jit
def _squeeze_row_of(q, RING_ROWS: tl.constexpr):
    """The row of the squeeze buffer holding pixel q: q mod RING_ROWS in a ring (q may
    be negative only where the row is masked off), q in a whole-input buffer
    (RING_ROWS 0)."""
    if RING_ROWS > 0:
        return q % RING_ROWS
    return q


@triton.jit
def _expand_tile(
    s_ptr, s_block_rows, q0, pid_e, e_split,
    w1_ptr, b1_ptr, w3_ptr, b3_ptr, out_ptr, list_ptr, counts_ptr,
    NHW, HW, H, W, E1, E3, stride_on, stride_oc, stride_oh, stride_ow,
    BLOCK_M: tl.constexpr, BLOCK_S: tl.constexpr, S_BLOCKS: tl.constexpr, S_PAD: tl.constexpr,
    BLOCK_E: tl.constexpr, E1_PAD: tl.constexpr, E3_PAD: tl.constexpr,
    RING_ROWS: tl.constexpr, BLOCK_LIST: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """Both expands of the BLOCK_M pixels from q0, for the output-channel blocks
    pid_e, pid_e + e_split, ..., reading the squeeze from the [S_BLOCKS,
    s_block_rows, BLOCK_S] buffer at s_ptr."""
    q, n, h, w, ok = _pixels(q0, NHW, HW, W, BLOCK_M)
    out_rows = out_ptr + n * stride_on + h * stride_oh + w * stride_ow
    sj = tl.arange(0, BLOCK_S)
    dtype = out_ptr.dtype.element_ty
    centre = _squeeze_row_of(q, RING_ROWS)

    for eb in range(pid_e, tl.cdiv(E1, BLOCK_E), e_split):
        ec = eb * BLOCK_E + tl.arange(0, BLOCK_E)
        acc = tl.zeros((BLOCK_M, BLOCK_E), dtype=tl.float32)
        for sb in range(S_BLOCKS):
            sv = tl.load(s_ptr + (sb * s_block_rows + centre)[:, None] * BLOCK_S + sj[None, :],
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
            rows = _squeeze_row_of(q + dy * W + dx, RING_ROWS)
            sv = tl.load(s_ptr + (sb * s_block_rows + rows)[:, None] * BLOCK_S + sj[None, :],
                         mask=inside[:, None], other=0.0)
            wt = tl.load(w3_ptr + (tap * S_PAD + sb * BLOCK_S + sj)[:, None] * E3_PAD + ec[None, :])
            acc = _dot(sv, wt, acc, PRECISION, UPCAST)
        acc += tl.load(b3_ptr + ec)[None, :]
        tl.store(out_rows[:, None] + (E1 + ec[None, :]) * stride_oc, _to(_relu(acc), dtype, UPCAST),
                 mask=ok[:, None] & (ec[None, :] < E3))


@triton.jit
def _squeeze_span(
    x_ptr, ws_ptr, bs_ptr, ring, first, stop, NHW, HW, W, C,
    stride_xn, stride_xc, stride_xh, stride_xw,
    BLOCK_M: tl.constexpr, CHUNK: tl.constexpr, RING_ROWS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, S_BLOCKS: tl.constexpr, S_PAD: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """The squeeze chunks first .. stop - 1 into the ring: BLOCK_M rows a step where
    they fill one (each weight block then serves BLOCK_M pixels), CHUNK rows else."""
    ch = first
    while ch < stop:
        if stop - ch >= BLOCK_M // CHUNK:
            _squeeze_rows(x_ptr, ws_ptr, bs_ptr, ring, ch * CHUNK, RING_ROWS, NHW, HW, W, C,
                          stride_xn, stride_xc, stride_xh, stride_xw,
                          BLOCK_M, RING_ROWS, BLOCK_C, BLOCK_S, S_BLOCKS, S_PAD, PRECISION, UPCAST)
            ch += BLOCK_M // CHUNK
        else:
            _squeeze_rows(x_ptr, ws_ptr, bs_ptr, ring, ch * CHUNK, RING_ROWS, NHW, HW, W, C,
                          stride_xn, stride_xc, stride_xh, stride_xw,
                          CHUNK, RING_ROWS, BLOCK_C, BLOCK_S, S_BLOCKS, S_PAD, PRECISION, UPCAST)
            ch += 1


@triton.jit
def _fire_fused_kernel(
    x_ptr, ws_ptr, bs_ptr, w1_ptr, b1_ptr, w3_ptr, b3_ptr, out_ptr, ring_ptr,
    list_ptr, counts_ptr,
    NHW, HW, H, W, C, E1, E3,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_on, stride_oc, stride_oh, stride_ow,
    tiles,
    BLOCK_M: tl.constexpr, CHUNK: tl.constexpr, RING_ROWS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, S_BLOCKS: tl.constexpr, S_PAD: tl.constexpr,
    BLOCK_E: tl.constexpr, E1_PAD: tl.constexpr, E3_PAD: tl.constexpr,
    BLOCK_LIST: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """The fused plan: this program's band of tiles, its squeeze in its own ring."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    ring = ring_ptr + pid.to(tl.int64) * (RING_ROWS * S_PAD)
    # An even share of the tiles, in order, so that neighbouring tiles share halos.
    t_begin = (pid.to(tl.int64) * tiles // programs).to(tl.int32)
    t_end = ((pid + 1).to(tl.int64) * tiles // programs).to(tl.int32)
    # Odd programs walk their band backwards, so both programs on either side of a
    # band boundary read its input rows in the same step (both first, or both last),
    # and the second read hits L2.
    backward = pid % 2
    # The squeeze chunks [lo, hi) are in the ring.
    lo = 0
    hi = 0
    for i in range(t_end - t_begin):
        t = t_begin + i + backward * (t_end - t_begin - 1 - 2 * i)
        q0 = t * BLOCK_M
        first = tl.maximum(q0 - W - 1, 0) // CHUNK
        last = tl.minimum(q0 + BLOCK_M + W, NHW - 1) // CHUNK
        if i == 0:
            lo = first
            hi = first
        # The chunks this tile needs that are not in the ring: before it (walking
        # backwards) or after it (forwards).
        _squeeze_span(x_ptr, ws_ptr, bs_ptr, ring, first, lo, NHW, HW, W, C,
                      stride_xn, stride_xc, stride_xh, stride_xw, BLOCK_M, CHUNK, RING_ROWS,
                      BLOCK_C, BLOCK_S, S_BLOCKS, S_PAD, PRECISION, UPCAST)
        _squeeze_span(x_ptr, ws_ptr, bs_ptr, ring, tl.maximum(hi, first), last + 1, NHW, HW, W, C,
                      stride_xn, stride_xc, stride_xh, stride_xw, BLOCK_M, CHUNK, RING_ROWS,
                      BLOCK_C, BLOCK_S, S_BLOCKS, S_PAD, PRECISION, UPCAST)
        lo = tl.minimum(lo, first)
        hi = tl.maximum(hi, last + 1)
        # Every thread reads squeeze rows other threads wrote ...
        tl.debug_barrier()
        _expand_tile(ring, RING_ROWS, q0, 0, 1, w1_ptr, b1_ptr, w3_ptr, b3_ptr, out_ptr, list_ptr,
                     counts_ptr, NHW, HW, H, W, E1, E3, stride_on, stride_oc, stride_oh, stride_ow,
                     BLOCK_M, BLOCK_S, S_BLOCKS, S_PAD, BLOCK_E, E1_PAD, E3_PAD, RING_ROWS,
                     BLOCK_LIST, PRECISION, UPCAST)
        # ... and must be done reading before the next tile's chunks overwrite them.
        tl.debug_barrier()


@triton.jit
def _squeeze_kernel(
    x_ptr, ws_ptr, bs_ptr, s_ptr,
    NHW, HW, W, C, stride_xn, stride_xc, stride_xh, stride_xw, s_block_rows,
    CHUNK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
    S_BLOCKS: tl.constexpr, S_PAD: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """Two-phase plan, phase 1: the squeeze of CHUNK pixels into the buffer."""
    _squeeze_rows(x_ptr, ws_ptr, bs_ptr, s_ptr, tl.program_id(0) * CHUNK, s_block_rows,
                  NHW, HW, W, C, stride_xn, stride_xc, stride_xh, stride_xw,
                  CHUNK, 0, BLOCK_C, BLOCK_S, S_BLOCKS, S_PAD, PRECISION, UPCAST)


@triton.jit
def _expand_kernel(
    s_ptr, w1_ptr, b1_ptr, w3_ptr, b3_ptr, out_ptr, list_ptr, counts_ptr,
    NHW, HW, H, W, E1, E3, stride_on, stride_oc, stride_oh, stride_ow, s_block_rows,
    BLOCK_M: tl.constexpr, BLOCK_S: tl.constexpr, S_BLOCKS: tl.constexpr, S_PAD: tl.constexpr,
    BLOCK_E: tl.constexpr, E1_PAD: tl.constexpr, E3_PAD: tl.constexpr,
    BLOCK_LIST: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """Two-phase plan, phase 2: one tile's share of the expands from the buffer; the
    grid's second axis splits the output-channel blocks."""
    _expand_tile(s_ptr, s_block_rows, tl.program_id(0) * BLOCK_M, tl.program_id(1),
                 tl.num_programs(1),
                 w1_ptr, b1_ptr, w3_ptr, b3_ptr, out_ptr, list_ptr, counts_ptr,
                 NHW, HW, H, W, E1, E3, stride_on, stride_oc, stride_oh, stride_ow,
                 BLOCK_M, BLOCK_S, S_BLOCKS, S_PAD, BLOCK_E, E1_PAD, E3_PAD, 0,
                 BLOCK_LIST, PRECISION, UPCAST)
