/* Block-wise 4-bit (NF4, FP4) and 8-bit (int8) quantization of float32
 * tensors on the CPU, bit-compatible with bitsandbytes 0.50.2's CPU path.
 * docs/quantization.md is the byte-level spec; this header is the API.
 *
 * A tensor of n elements is flattened and cut into blocks of `block`
 * elements (a power of two, 32..4096); the last block is short when block
 * does not divide n. Each block b has one float32 absmax[b] (the largest
 * |x| of its real elements) and one code per element:
 *   nf4, fp4: 4-bit index into a 16-entry codebook, two per byte, element 2i
 *             in the HIGH nibble of byte i, 2i+1 in the low nibble; an odd n
 *             pads the last low nibble with the code of 0.0.
 *             codes: (n + 1) / 2 bytes.
 *   int8:     int8_t q = round-half-even(x * (127 / absmax)), one byte each,
 *             two's complement. codes: n bytes.
 * 4-bit codes are the nearest value to the scaled input, ties to the lower:
 * s = x * (1 / max(absmax, 1e-38)) in a full block, x / max(absmax, 1e-38)
 * in the short last block (bitsandbytes' rules, docs/quantization.md 3).
 * Dequantization is code_value * absmax (4-bit), q * (absmax / 127) (int8).
 *
 * The *_ref functions are the scalar reference, the oracle for the SIMD
 * versions; airllm_quantize/airllm_dequantize dispatch to the fastest
 * implementation this CPU has (AVX-512, AVX2, NEON) and give bit-identical
 * results. Inputs must be finite: quantization fails on inf or NaN. */
#ifndef AIRLLM_QUANT_H
#define AIRLLM_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "airllm_dtype.h"
#include "airllm_err.h"

typedef enum {
    AIRLLM_QUANT_NF4 = 1,
    AIRLLM_QUANT_FP4 = 2,
    AIRLLM_QUANT_INT8 = 3,
} airllm_quant_type;

#define AIRLLM_QUANT_BLOCK_MIN 32
#define AIRLLM_QUANT_BLOCK_MAX 4096
#define AIRLLM_QUANT_BLOCK_DEFAULT 64
/* Block size of the double quantization of absmax values (bitsandbytes'). */
#define AIRLLM_QUANT_DQ_BLOCK 256

/* The codebooks, indexed by code, exactly as bitsandbytes' get_4bit_type
 * returns them. NF4 is sorted ascending; FP4 is in bit-pattern order
 * (bit 3 = sign, bits 0..2 = e2m1 magnitude; codes 0 and 8 are both 0.0). */
extern const float airllm_nf4_code[16];
extern const float airllm_fp4_code[16];

/* bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
 * total_bits=8): 256 ascending values in [-0.99297, 1], code 127 == 0.0. */
void airllm_quant_dynamic_map(float map[256]);

/* The 4-bit rounding rule as tables (nf4 or fp4; -1 for other types):
 * sorted_code[k] is the code of the k-th smallest codebook value (bitsandbytes'
 * argsort order: FP4's two zeros sort as code 0 then code 8), and
 * mid[k] = (value(sorted_code[k]) + value(sorted_code[k+1])) / 2 in float.
 * A scaled value s gets sorted_code[k], k = number of mid[] < s: the nearest
 * value, a tie (s == mid[k]) going to the lower one. */
int airllm_quant4_tables(airllm_quant_type type, uint8_t sorted_code[16], float mid[15]);

/* "nf4", "fp4", "int8", or NULL for an unknown type. */
const char *airllm_quant_type_name(airllm_quant_type type);
/* Parses one of those names; returns -1 if unknown. */
int airllm_quant_type_from_name(const char *name, airllm_quant_type *out);

/* 0 if block is a power of two in [32, 4096], else -1 with a message. */
int airllm_quant_check_block(size_t block, airllm_err *err);
/* Number of blocks, ceil(n / block) (0 for n == 0); block must be valid. */
size_t airllm_quant_nblocks(size_t n, size_t block);
/* Bytes of codes for n elements: (n + 1) / 2 for 4-bit, n for int8, 0 for an
 * unknown type. */
size_t airllm_quant_code_bytes(airllm_quant_type type, size_t n);

/* The argument checks of the quantize/dequantize functions other than NULL
 * pointers: a known type, a valid block, codes_cap >= code_bytes(type, n),
 * absmax_cap >= nblocks(n, block). 0, or -1 with a message. */
int airllm_quant_check_args(airllm_quant_type type, size_t n, size_t block, size_t codes_cap,
                            size_t absmax_cap, airllm_err *err);

/* Quantizes x (n floats). Writes airllm_quant_code_bytes(type, n) bytes to
 * codes (capacity codes_cap) and airllm_quant_nblocks(n, block) floats to
 * absmax (capacity absmax_cap). n == 0 is valid and writes nothing. Fails
 * on a bad type or block, a NULL buffer, too small a capacity, or a
 * non-finite input (codes and absmax are then unspecified). */
int airllm_quantize_ref(airllm_quant_type type, const float *x, size_t n, size_t block,
                        uint8_t *codes, size_t codes_cap, float *absmax, size_t absmax_cap,
                        airllm_err *err);
/* Inverse: out (n floats) from codes (codes_len bytes) and absmax
 * (absmax_len floats), which must hold at least what quantize wrote. */
int airllm_dequantize_ref(airllm_quant_type type, const uint8_t *codes, size_t codes_len,
                          const float *absmax, size_t absmax_len, size_t n, size_t block,
                          float *out, airllm_err *err);

/* ---- dispatch to SIMD (lib/airllm_quant_simd.c) ---- */

typedef enum {
    AIRLLM_QUANT_IMPL_AUTO = 0, /* the fastest available */
    AIRLLM_QUANT_IMPL_SCALAR = 1,
    AIRLLM_QUANT_IMPL_AVX2 = 2,
    AIRLLM_QUANT_IMPL_AVX512 = 3, /* avx512f + avx512bw */
    AIRLLM_QUANT_IMPL_NEON = 4,
} airllm_quant_impl;

/* "auto", "scalar", "avx2", "avx512", "neon"; NULL for an unknown value. */
const char *airllm_quant_impl_name(airllm_quant_impl impl);
/* 1 if this build and this CPU can run impl (AUTO and SCALAR: always). */
int airllm_quant_impl_available(airllm_quant_impl impl);
/* Forces an implementation for this process (AUTO: back to the default).
 * Fails if it is not available. Takes precedence over the environment. */
int airllm_quant_set_impl(airllm_quant_impl impl, airllm_err *err);
/* The implementation airllm_quantize would use now: the forced one, else
 * AIRLLM_QUANT_IMPL=scalar|avx2|avx512|neon|auto from the environment, else
 * the fastest available. Fails if the variable names an unknown or
 * unavailable implementation. */
int airllm_quant_impl_active(airllm_quant_impl *out, airllm_err *err);
/* Same contract and bit-identical results as the _ref functions. */
int airllm_quantize(airllm_quant_type type, const float *x, size_t n, size_t block,
                    uint8_t *codes, size_t codes_cap, float *absmax, size_t absmax_cap,
                    airllm_err *err);
int airllm_dequantize(airllm_quant_type type, const uint8_t *codes, size_t codes_len,
                      const float *absmax, size_t absmax_len, size_t n, size_t block,
                      float *out, airllm_err *err);

/* ---- 8-bit dynamic-map quantization and double quantization ---- */

/* bitsandbytes has two CPU kernels for its 8-bit dynamic-map quantizer
 * (quantize_blockwise) and they differ in about 0.2% of codes:
 *   NEAREST: the exact nearest map entry, ties to the lower one (its
 *            default torch kernel, and the rule of its CUDA kernel);
 *   BNB_LUT: its native CPU kernel, which rounds through a 65536-bin lookup
 *            table and so is not always nearest. What quantize_4bit(...,
 *            compress_statistics=True) produces on a CPU. */
typedef enum {
    AIRLLM_DQ_NEAREST = 0,
    AIRLLM_DQ_BNB_LUT = 1,
} airllm_dq_rounding;

/* bitsandbytes' quantize_blockwise(x, code=dynamic map, blocksize): one
 * code byte per element (codes: n bytes) and one absmax per block. Same
 * argument rules as airllm_quantize_ref. */
int airllm_quantize_dynamic8_ref(airllm_dq_rounding mode, const float *x, size_t n,
                                 size_t block, uint8_t *codes, size_t codes_cap,
                                 float *absmax, size_t absmax_cap, airllm_err *err);
/* out[i] = map[codes[i]] * absmax[i / block]. */
int airllm_dequantize_dynamic8_ref(const uint8_t *codes, size_t n, const float *absmax,
                                   size_t absmax_len, size_t block, float *out,
                                   airllm_err *err);

/* Double quantization (bitsandbytes' compress_statistics) of the n absmax
 * values of a 4-bit tensor:
 *   offset = mean(absmax)                 (float32)
 *   q, absmax2 = dynamic8(absmax - offset, block 256)
 *   q: n bytes; absmax2: ceil(n / 256) floats.
 * offset_in NULL: offset is computed as the double-accumulated mean rounded
 * to float (bitsandbytes' float32 torch.mean can differ by an ulp or two);
 * otherwise *offset_in is used as is. The offset used is stored to
 * *offset_out. */
int airllm_dq_compress(airllm_dq_rounding mode, const float *absmax, size_t n,
                       const float *offset_in, uint8_t *q, size_t q_cap, float *absmax2,
                       size_t absmax2_cap, float *offset_out, airllm_err *err);
/* absmax_out[i] = map[q[i]] * absmax2[i / 256] + offset (two roundings, as
 * bitsandbytes). absmax2_len must be at least ceil(n / 256). */
int airllm_dq_decompress(const uint8_t *q, size_t n, const float *absmax2, size_t absmax2_len,
                         float offset, float *absmax_out, airllm_err *err);

/* ---- input conversion ---- */

/* IEEE half / bfloat16 bit patterns to float32. Exact for every input:
 * subnormals, signed zeros, infinities; NaNs keep sign and payload. */
float airllm_f16_to_f32(uint16_t h);
float airllm_bf16_to_f32(uint16_t b);
/* n little-endian 2-byte values from src (2n bytes) to dst (n floats). */
void airllm_f16_to_f32_array(const uint8_t *src, size_t n, float *dst);
void airllm_bf16_to_f32_array(const uint8_t *src, size_t n, float *dst);
/* n little-endian elements of dtype F32, F16 or BF16 to float32; any other
 * dtype is an error. */
int airllm_float_to_f32_array(airllm_dtype dt, const uint8_t *src, size_t n, float *dst,
                              airllm_err *err);

/* ---- error statistics ---- */

typedef struct {
    double rmse;    /* sqrt(mean((x - y)^2)) */
    double max_abs; /* max |x - y| */
    double rel_fro; /* ||x - y||_F / ||x||_F; 0 if both are 0, inf if only x is */
} airllm_quant_stats;

/* Error of y (dequantized) against x (original), n > 0 elements, accumulated
 * in double. Fails on NULL pointers, n == 0, or non-finite values. */
int airllm_quant_error_stats(const float *x, const float *y, size_t n, airllm_quant_stats *out,
                             airllm_err *err);

/* Per-block error sums, the streaming form of the statistics. Each block is
 * first scaled by the power of two 2^-exp that brings its absmax a into
 * [0.5, 1) (exp = 0 when a is 0; exp clamped to [-126, 126] so 2^-exp is a
 * normal float), exactly, so that float sums neither underflow for tiny
 * weights nor overflow for huge ones. With xs = x 2^-exp,
 * ys = y 2^-exp, e = xs - ys and v = ys / (a 2^-exp) (the codebook value),
 *   e2 = sum e^2, x2 = sum xs^2, ev = sum e*v, v2 = sum v^2,
 *   max_e = max |e|, max_v = max |v|,
 * so the true squared error is e2 * 4^exp, and so on. e2, ev and v2 let a
 * caller correct the error for a scale that changes later (double
 * quantization: x - v*a' = (e + v*(a - a') 2^-exp) 2^exp).
 * Sums are float, in 16 lanes (element i of the block in lane i % 16),
 * then the lanes are added pairwise (lane k += lane k + w for w = 8, 4, 2,
 * 1), so every implementation gives the same bits. */
typedef struct {
    float e2, x2, ev, v2, max_e, max_v;
    int32_t exp;
} airllm_qblock_stats;

/* One entry of out per block of n elements (the last may be short). */
int airllm_quant_block_stats_ref(const float *x, const float *y, size_t n, size_t block,
                                 const float *absmax, airllm_qblock_stats *out, airllm_err *err);
/* The same, dispatched like airllm_quantize (bit-identical). */
int airllm_quant_block_stats(const float *x, const float *y, size_t n, size_t block,
                             const float *absmax, airllm_qblock_stats *out, airllm_err *err);

#endif
