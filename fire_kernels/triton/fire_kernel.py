"""The fused Fire in Triton: one launch per Fire (GPU; CPU tensors under TRITON_INTERPRET=1).

Math (per image, NHWC view):
    s[p, c]    = relu(b_s[c] + sum_k x[p, k] W_s[c, k])                       squeeze
    out[p, e]  = relu(b_1[e] + sum_c s[p, c] W_1[e, c])                 e < E1, expand 1x1
    out[p, E1 + e] = relu(b_3[e] + sum_{c, dy, dx} s[p + (dy-1, dx-1), c] W_3[e, c, dy, dx])

Tiling: one program owns a TH x TW tile of output pixels of one image, and (when
the grid is split along channels to fill the GPU) a share of the output channels.
  1. Squeeze for the tile plus its one-pixel halo, (TH+2) x (TW+2) pixels as a flat
     block of HALO_P rows: tl.dot over input-channel blocks of BLOCK_C, bias, ReLU,
     zero outside the image (the 3x3's padding). It goes to a per-program scratch
     that stays in L2: the squeeze is computed once, never once per 3x3 tap.
  2. A barrier, then the expands from the scratch: the 1x1 as one tl.dot per
     squeeze-channel block, the 3x3 as nine (tl.static_range) of them, each reading
     the scratch at the tap's shift; bias and ReLU in registers; stores straight into
     the output's channel slice (any strides: NCHW or channels last), so the concat
     is free.
  3. Block-sparse variant (BLOCK_LIST): for each block of BLOCK_E output channels the
     3x3 visits only the (tap, BLOCK_S squeeze channels) blocks of its list, those
     with a nonzero weight, so block-pruned weights
     (``prune_fire_modules(block=(16, 16))``) cost only their nonzero blocks.
Every tl.dot dimension is >= 16 (channel blocks are padded and masked).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _relu(v):
    # NaN stays NaN, as in torch.relu.
    return tl.maximum(v, 0.0, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    # UPCAST: Triton 3.9's interpreter computes bfloat16 tl.dot wrongly (it reads the
    # raw 16-bit patterns); under it, bfloat16 operands are widened first.
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _tap_dot(acc, scratch, w3_ptr, ec, tap, sb, ty, tx, sj, S, E3,
             TW: tl.constexpr, HALO_P: tl.constexpr, BLOCK_S: tl.constexpr,
             PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc += the 3x3's tap `tap` for squeeze block `sb`: the scratch rows shifted by
    the tap times that block of the weights."""
    shifted = (ty + tap // 3) * (TW + 2) + (tx + tap % 3)
    sc = sb * BLOCK_S + sj
    wt = tl.load(w3_ptr + (ec[None, :] * S + sc[:, None]) * 9 + tap,
                 mask=(sc[:, None] < S) & (ec[None, :] < E3), other=0.0)
    sv = tl.load(scratch + (sb * HALO_P + shifted[:, None]) * BLOCK_S + sj[None, :])
    return _dot(sv, wt, acc, PRECISION, UPCAST)


@triton.jit
def _fire_kernel(
    x_ptr, ws_ptr, bs_ptr, w1_ptr, b1_ptr, w3_ptr, b3_ptr, out_ptr, scratch_ptr,
    list_ptr, counts_ptr,
    H, W, C, S, E1, E3,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_on, stride_oc, stride_oh, stride_ow,
    tiles_w, tiles_per_image,
    HAS_BS: tl.constexpr, HAS_B1: tl.constexpr, HAS_B3: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr, HALO_P: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, S_BLOCKS: tl.constexpr,
    BLOCK_E: tl.constexpr, E_SPLIT: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, BLOCK_LIST: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_e = tl.program_id(1)
    n = (pid // tiles_per_image).to(tl.int64)
    tile = pid % tiles_per_image
    r0 = (tile // tiles_w) * TH
    c0 = (tile % tiles_w) * TW
    dtype = out_ptr.dtype.element_ty

    # ---- 1. squeeze of the tile and its halo into the scratch -------------------
    hp = tl.arange(0, HALO_P)
    hy = r0 - 1 + hp // (TW + 2)
    hx = c0 - 1 + hp % (TW + 2)
    in_image = (hp < (TH + 2) * (TW + 2)) & (hy >= 0) & (hy < H) & (hx >= 0) & (hx < W)
    x_rows = x_ptr + n * stride_xn + hy * stride_xh + hx * stride_xw
    slot = (pid * E_SPLIT + pid_e).to(tl.int64)
    scratch = scratch_ptr + slot * (HALO_P * S_BLOCKS * BLOCK_S)
    for sb in tl.static_range(S_BLOCKS):
        sc = sb * BLOCK_S + tl.arange(0, BLOCK_S)
        acc = tl.zeros((HALO_P, BLOCK_S), dtype=tl.float32)
        for k0 in range(0, C, BLOCK_C):
            kc = k0 + tl.arange(0, BLOCK_C)
            xt = tl.load(x_rows[:, None] + kc[None, :] * stride_xc,
                         mask=in_image[:, None] & (kc[None, :] < C), other=0.0)
            wt = tl.load(ws_ptr + sc[None, :] * C + kc[:, None],
                         mask=(kc[:, None] < C) & (sc[None, :] < S), other=0.0)
            acc = _dot(xt, wt, acc, PRECISION, UPCAST)
        if HAS_BS:
            acc += tl.load(bs_ptr + sc, mask=sc < S, other=0.0).to(tl.float32)[None, :]
        s = tl.where(in_image[:, None] & (sc[None, :] < S), _relu(acc), 0.0)
        tl.store(scratch + (sb * HALO_P + hp[:, None]) * BLOCK_S + tl.arange(0, BLOCK_S)[None, :],
                 s.to(dtype))
    # Every thread of the program reads what the others wrote.
    tl.debug_barrier()

    # ---- 2. the expands from the scratch -------------------------------------------
    tp = tl.arange(0, TH * TW)
    ty = tp // TW
    tx = tp % TW
    oy = r0 + ty
    ox = c0 + tx
    out_ok = (oy < H) & (ox < W)
    out_rows = out_ptr + n * stride_on + oy * stride_oh + ox * stride_ow
    sj = tl.arange(0, BLOCK_S)
    centre = (ty + 1) * (TW + 2) + (tx + 1)

    e1_blocks = tl.cdiv(E1, BLOCK_E)
    for eb in range(pid_e, e1_blocks, E_SPLIT):
        ec = eb * BLOCK_E + tl.arange(0, BLOCK_E)
        acc = tl.zeros((TH * TW, BLOCK_E), dtype=tl.float32)
        for sb in tl.static_range(S_BLOCKS):
            sc = sb * BLOCK_S + sj
            sv = tl.load(scratch + (sb * HALO_P + centre[:, None]) * BLOCK_S + sj[None, :])
            wt = tl.load(w1_ptr + ec[None, :] * S + sc[:, None],
                         mask=(sc[:, None] < S) & (ec[None, :] < E1), other=0.0)
            acc = _dot(sv, wt, acc, PRECISION, UPCAST)
        if HAS_B1:
            acc += tl.load(b1_ptr + ec, mask=ec < E1, other=0.0).to(tl.float32)[None, :]
        tl.store(out_rows[:, None] + ec[None, :] * stride_oc, _relu(acc).to(dtype),
                 mask=out_ok[:, None] & (ec[None, :] < E1))

    e3_blocks = tl.cdiv(E3, BLOCK_E)
    for eb in range(pid_e, e3_blocks, E_SPLIT):
        ec = eb * BLOCK_E + tl.arange(0, BLOCK_E)
        acc = tl.zeros((TH * TW, BLOCK_E), dtype=tl.float32)
        if BLOCK_LIST:
            # The nonzero (tap, squeeze block) pairs of this output block, as
            # tap * S_BLOCKS + squeeze block.
            for i in range(tl.load(counts_ptr + eb)):
                entry = tl.load(list_ptr + eb * (9 * S_BLOCKS) + i)
                acc = _tap_dot(acc, scratch, w3_ptr, ec, entry // S_BLOCKS, entry % S_BLOCKS,
                               ty, tx, sj, S, E3, TW, HALO_P, BLOCK_S, PRECISION, UPCAST)
        else:
            for tap in tl.static_range(9):
                for sb in tl.static_range(S_BLOCKS):
                    acc = _tap_dot(acc, scratch, w3_ptr, ec, tap, sb, ty, tx, sj, S, E3, TW,
                                   HALO_P, BLOCK_S, PRECISION, UPCAST)
        if HAS_B3:
            acc += tl.load(b3_ptr + ec, mask=ec < E3, other=0.0).to(tl.float32)[None, :]
        tl.store(out_rows[:, None] + (E1 + ec[None, :]) * stride_oc,
                 _relu(acc).to(dtype), mask=out_ok[:, None] & (ec[None, :] < E3))
