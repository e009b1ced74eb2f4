#version 450
// matrices (mat4 * vec4, transpose), a local array (spirv-cross spvUnsafeArray with address-space
// qualified operator[]), cross and inversesqrt
layout(local_size_x = 32) in;
layout(std430, binding = 0) buffer B { mat4 m; vec4 v[]; } buf;
layout(std430, binding = 1) buffer P { vec3 p[]; } pts;
void main() {
    uint i = gl_GlobalInvocationID.x;
    float tmp[4];
    for (int k = 0; k < 4; ++k) tmp[k] = buf.v[i][k] * float(k);
    vec4 t = vec4(tmp[0], tmp[1], tmp[2], tmp[3]);
    buf.v[i] = buf.m * t + transpose(buf.m)[1];
    pts.p[i] = cross(pts.p[i], vec3(0.0, 0.0, 1.0)) * inversesqrt(4.0);
}
