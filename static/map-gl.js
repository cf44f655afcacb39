// WebGL2 renderer of the map. Points live once in GPU buffers as normalised uint16 positions;
// the view is applied in the vertex shaders as clip = pos * u_scale + u_offset. A frame draws
// the points it lists (those in view, thinned when zoomed out: Tiles.pointIndices) from a
// streamed index buffer, one call per batch; then each loaded tile atlas as instanced quads
// (their positions read straight from the points buffer at the tile's offset); then the ring.

import { PALETTE } from './map-colour.js';

const POINT_VS = `#version 300 es
layout(location = 0) in vec2 a_pos;
layout(location = 1) in uint a_value;   // colour value; 0xFFFF = none/missing
uniform vec2 u_scale;
uniform vec2 u_offset;
uniform float u_size;
uniform float u_alpha;
uniform bool u_number;
uniform sampler2D u_palette;
out vec4 v_colour;
void main() {
  gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0);
  gl_PointSize = u_size;
  if (a_value == 65535u) {
    v_colour = vec4(0.5, 0.5, 0.5, u_alpha);
  } else if (u_number) {
    int texel = int(float(min(a_value, 65534u)) / 65534.0 * 255.0 + 0.5);
    v_colour = vec4(texelFetch(u_palette, ivec2(texel, 0), 0).rgb, u_alpha);
  } else {
    v_colour = vec4(texelFetch(u_palette, ivec2(int(a_value % ${PALETTE.length}u), 0), 0).rgb, u_alpha);
  }
}`;

const POINT_FS = `#version 300 es
precision mediump float;
uniform bool u_round;
in vec4 v_colour;
out vec4 o_colour;
void main() {
  vec2 d = gl_PointCoord - 0.5;
  if (u_round && dot(d, d) > 0.25) discard;
  o_colour = v_colour;
}`;

// Corners come from gl_VertexID (a 4-vertex triangle strip); the atlas cell from gl_InstanceID.
const QUAD_VS = `#version 300 es
layout(location = 0) in vec2 a_pos;   // per instance
uniform vec2 u_scale;
uniform vec2 u_offset;
uniform vec2 u_half;                  // half the quad size in clip units
uniform int u_cols;
uniform vec2 u_cell;                  // one atlas cell in texture coordinates
out vec2 v_uv;
void main() {
  vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1));
  gl_Position = vec4(a_pos * u_scale + u_offset + (corner * 2.0 - 1.0) * u_half, 0.0, 1.0);
  vec2 cell = vec2(float(gl_InstanceID % u_cols), float(gl_InstanceID / u_cols));
  v_uv = (cell + vec2(corner.x, 1.0 - corner.y)) * u_cell;   // atlas row 0 is the image top
}`;

const QUAD_FS = `#version 300 es
precision mediump float;
uniform sampler2D u_atlas;
in vec2 v_uv;
out vec4 o_colour;
void main() {
  o_colour = texture(u_atlas, v_uv);
}`;

const RING_VS = `#version 300 es
uniform vec2 u_at;
uniform float u_size;
void main() {
  gl_Position = vec4(u_at, 0.0, 1.0);
  gl_PointSize = u_size;
}`;

// A white ring with a dark outer edge, visible on both points and thumbnails.
const RING_FS = `#version 300 es
precision mediump float;
out vec4 o_colour;
void main() {
  float r = length(gl_PointCoord - 0.5) * 2.0;
  if (r > 1.0 || r < 0.72) discard;
  o_colour = r > 0.88 ? vec4(0.0, 0.0, 0.0, 1.0) : vec4(1.0, 1.0, 1.0, 1.0);
}`;

/** Opacity of a point that stands for one item. */
const ALPHA = 0.85;
/** A point standing for several items (a thinned tile) grows to at most this many times its side. */
export const MAX_GROW = 2;

/** Background colour of the map (matches --bg in site.css). */
const BACKGROUND = [0x0b / 255, 0x0d / 255, 0x12 / 255];

function compile(gl, vsSource, fsSource) {
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, vsSource], [gl.FRAGMENT_SHADER, fsSource]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
      throw new Error(`shader: ${gl.getShaderInfoLog(shader)}`);
    }
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
    throw new Error(`shader link: ${gl.getProgramInfoLog(program)}`);
  }
  const uniforms = {};
  const count = gl.getProgramParameter(program, gl.ACTIVE_UNIFORMS);
  for (let i = 0; i < count; i++) {
    const { name } = gl.getActiveUniform(program, i);
    uniforms[name] = gl.getUniformLocation(program, name);
  }
  return { program, uniforms };
}

export class Renderer {
  /** Throws an Error with a readable message when WebGL2 is unavailable. */
  constructor(canvas) {
    const gl = canvas.getContext('webgl2', {
      alpha: false,
      antialias: false,
      preserveDrawingBuffer: true, // lets tests read pixels back
    });
    if (!gl) {
      throw new Error(
        'This map needs WebGL2, which this browser does not provide (or has disabled). ' +
          'The Clusters, Outliers and Duplicates pages work without it.',
      );
    }
    this.gl = gl;
    this.canvas = canvas;
    this.pointProgram = compile(gl, POINT_VS, POINT_FS);
    this.quadProgram = compile(gl, QUAD_VS, QUAD_FS);
    this.ringProgram = compile(gl, RING_VS, RING_FS);
    this.count = 0;
    this.numberColours = false;

    this.positions = gl.createBuffer();
    this.values = gl.createBuffer();
    this.indices = gl.createBuffer();
    this.pointVao = gl.createVertexArray();
    this.quadVao = gl.createVertexArray();

    this.palette = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, this.palette);
    gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA8, 256, 1);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);

    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
  }

  /** Uploads the positions (interleaved uint16 x, y) once. */
  setPoints(points) {
    const gl = this.gl;
    this.count = points.length >> 1;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
    gl.bufferData(gl.ARRAY_BUFFER, points, gl.STATIC_DRAW);

    gl.bindVertexArray(this.pointVao);
    gl.enableVertexAttribArray(0);
    gl.vertexAttribPointer(0, 2, gl.UNSIGNED_SHORT, true, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.values);
    gl.bufferData(gl.ARRAY_BUFFER, new Uint16Array(this.count).fill(0xffff), gl.DYNAMIC_DRAW);
    gl.enableVertexAttribArray(1);
    gl.vertexAttribIPointer(1, 1, gl.UNSIGNED_SHORT, 0, 0);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.indices); // part of the VAO's state

    gl.bindVertexArray(this.quadVao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
    gl.enableVertexAttribArray(0);
    gl.vertexAttribDivisor(0, 1);
    gl.bindVertexArray(null);
  }

  /** Replaces the per-point colour values and the palette for kind "category" or "number". */
  setColours(values, kind, texels) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.values);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, values);
    gl.bindTexture(gl.TEXTURE_2D, this.palette);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, 256, 1, gl.RGBA, gl.UNSIGNED_BYTE, texels);
    this.numberColours = kind === 'number';
  }

  /**
   * Makes a texture `height` pixels high from atlas images, each [{ image, y }] drawn with
   * its top at row y, later ones over earlier ones; `thumb` is the cell size in pixels.
   */
  createAtlas(parts, cols, thumb, height) {
    const gl = this.gl;
    const texture = gl.createTexture();
    const width = cols * thumb;
    gl.bindTexture(gl.TEXTURE_2D, texture);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, width, height, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
    for (const { image, y } of parts) gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, y, gl.RGBA, gl.UNSIGNED_BYTE, image);
    // A few mip levels keep minified thumbnails smooth; deeper ones would blend whole cells.
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAX_LEVEL, 3);
    gl.generateMipmap(gl.TEXTURE_2D);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR_MIPMAP_LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    return { texture, cols, cell: [thumb / width, thumb / height] };
  }

  deleteAtlas(atlas) {
    this.gl.deleteTexture(atlas.texture);
  }

  /** Matches the drawing buffer to the canvas's CSS size; returns that size in CSS pixels. */
  resize() {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, this.canvas.clientWidth);
    const height = Math.max(1, this.canvas.clientHeight);
    const w = Math.round(width * dpr);
    const h = Math.round(height * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    return { width, height, dpr };
  }

  /**
   * Draws one frame. frame = { scale, offset: clip transform of normalised positions,
   * pointSize (device px), points: { indices (Uint32Array of map indices), batches: [{ weight,
   * offset, count }] (slices of indices, each point standing for `weight` items) },
   * quads: [{ atlas, start, count, half: [x, y] clip }], ring: null or { at: [x, y] clip,
   * size (device px) } }.
   */
  draw(frame) {
    const gl = this.gl;
    gl.viewport(0, 0, gl.drawingBufferWidth, gl.drawingBufferHeight);
    gl.clearColor(...BACKGROUND, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);

    const p = this.pointProgram;
    gl.useProgram(p.program);
    gl.uniform2fv(p.uniforms.u_scale, frame.scale);
    gl.uniform2fv(p.uniforms.u_offset, frame.offset);
    gl.uniform1i(p.uniforms.u_number, this.numberColours ? 1 : 0);
    gl.uniform1i(p.uniforms.u_palette, 0);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.palette);
    gl.bindVertexArray(this.pointVao);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, frame.points.indices, gl.STREAM_DRAW);
    for (const { weight, offset, count } of frame.points.batches) {
      if (!count) continue;
      // Where points overlap at random, the background shows through exp(-alpha * area *
      // density). A random 1/weight of them keeps that (so the picture's look) if alpha * area
      // grows by `weight`: alpha first, up to opaque, then the area, up to MAX_GROW² times.
      const alpha = Math.min(1, ALPHA * weight);
      const size = frame.pointSize * Math.sqrt(Math.min(MAX_GROW * MAX_GROW, (ALPHA * weight) / alpha));
      gl.uniform1f(p.uniforms.u_alpha, alpha);
      gl.uniform1f(p.uniforms.u_size, size);
      gl.uniform1i(p.uniforms.u_round, size >= 3 ? 1 : 0);
      gl.drawElements(gl.POINTS, count, gl.UNSIGNED_INT, offset * 4);
    }

    if (frame.quads.length) {
      const q = this.quadProgram;
      gl.useProgram(q.program);
      gl.uniform2fv(q.uniforms.u_scale, frame.scale);
      gl.uniform2fv(q.uniforms.u_offset, frame.offset);
      gl.uniform1i(q.uniforms.u_atlas, 0);
      gl.bindVertexArray(this.quadVao);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
      for (const { atlas, start, count, half } of frame.quads) {
        gl.vertexAttribPointer(0, 2, gl.UNSIGNED_SHORT, true, 0, start * 4);
        gl.uniform2fv(q.uniforms.u_half, half);
        gl.uniform1i(q.uniforms.u_cols, atlas.cols);
        gl.uniform2fv(q.uniforms.u_cell, atlas.cell);
        gl.bindTexture(gl.TEXTURE_2D, atlas.texture);
        gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, count);
      }
    }

    if (frame.ring) {
      const r = this.ringProgram;
      gl.useProgram(r.program);
      gl.uniform2fv(r.uniforms.u_at, frame.ring.at);
      gl.uniform1f(r.uniforms.u_size, frame.ring.size);
      gl.bindVertexArray(null);
      gl.drawArrays(gl.POINTS, 0, 1);
    }
    gl.bindVertexArray(null);
  }
}
