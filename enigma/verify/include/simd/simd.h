// Enigma's Metal compatibility layer: <simd/simd.h> (spirv-cross output includes it). The vector
// types live in <metal_stdlib>.
#include <metal_stdlib>
