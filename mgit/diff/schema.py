"""The JSON schema of :meth:`mgit.diff.ModelDiff.to_json` (``mgit --json diff``), as Markdown.

README's "Model diff" section holds the same text. Schema 1 only ever gains keys: every key
and meaning of an earlier schema-1 document still holds, except that ``summary.identical`` now
also requires every file to be equal (``summary.tensors_identical`` is the tensors-only
answer).
"""

from __future__ import annotations

__all__ = ["JSON_SCHEMA_DOC"]

JSON_SCHEMA_DOC = """\
### `mgit --json diff` schema (version 1)

Top level:

| key          | type          | meaning                                                          |
|--------------|---------------|------------------------------------------------------------------|
| `schema`     | int           | schema version, `1`                                              |
| `a`, `b`     | string        | labels of the two sides (`"minilm@1a2b3c"`); `a` is "before"    |
| `summary`    | object        | counts over the whole diff (below)                               |
| `tensors`    | array         | one object for **every** tensor of either side, sorted by `name` |
| `groups`     | array         | one summary per module (name minus its last component)          |
| `blocks`     | array         | one summary per block (`encoder.layer.3`, `embeddings`)          |
| `files`      | array or null | one object for **every** file of either side, sorted by `path`; null when the sides have no files (arrays in memory) |
| `layout`     | array         | one object per re-sharded component (below)                     |
| `components` | array         | one summary per component folder (`unet`, `vae`, `checkpoint-30`, `(root)`), sorted by name |
| `lora`       | object or null | a PEFT LoRA adapter on one side, measured against the other side's weights (below) |

`groups` and `blocks` are sorted by size of change (see below).

`summary`: `tensors_a`, `tensors_b` (int: tensors as stored); one int per status: `removed`,
`added`, `shape_changed`, `dtype_changed`, `changed`, `unchanged`; `renamed` (tensors paired
across a task-head prefix such as `bert.`); `loaded` (tensor pairs whose data had to be read;
the others were decided from content ids); `numel_a`, `numel_b` (elements); `numel_changed`
(elements whose value differs); `l2_diff` (float, `sqrt` of the sum of squared per-tensor
`l2_diff`); `identical` (bool: every tensor **and every file** is unchanged, and no adapter
applies); `tensors_identical` (bool: every tensor is unchanged); `files_a`, `files_b` (int:
files on each side); one int per file status: `files_removed`, `files_added`,
`files_changed`, `files_unchanged`; `resharded` (int: entries of `layout`); `quantized_a`,
`quantized_b` (int: tensors read dequantized, one per quantized weight); `raw_codes_compared`
(int: tensors whose integer codes had to be compared with floats); `lora_modules` (int:
entries of `lora.modules`). Tensors whose stats have `raw_codes_compared` are left out of
`l2_diff`, `numel_changed` and the group sums.

Each `tensors[]` object:

- `name` (string): the tensor's key in b (in a for a removed tensor): its name, or
  `"<file>:<name>"` when several files of that version hold a tensor of that name (a
  diffusers `unet/` and `vae/` both holding `conv_in.weight`, a Trainer folder beside its
  `checkpoint-30/`). Tensors pair across the sides by file and name first, then by component
  folder and name, then by name (and task-head prefix).
- `status` (string): `added` (only in b), `removed` (only in a), `unchanged`, `changed`
  (same dtype and shape, other values), `dtype_changed` (values compared in float64),
  `shape_changed`.
- `renamed_from` (string or null): the key in a when the name differs (paired across a
  task-head prefix).
- `dtype_a`, `dtype_b` (string or null): safetensors dtypes (`F32`, `BF16`, ...); null on the
  side that lacks the tensor. A quantized weight keeps the dtype of its codes (`I8`,
  `F8_E4M3`, `I32` for packed words).
- `shape_a`, `shape_b` (int array or null): shapes; null on the side that lacks the tensor. A
  quantized weight has the shape of the weight it stands for (`[out, in]`).
- `stats` (object or null): for `changed` and `dtype_changed`; for `shape_changed` of equal
  rank, over the common leading region (`overlap: true`); else null.
- `error` (string or null): why `stats` could not be computed, or why they mean less (raw
  integer codes compared with floats).
- `file_a`, `file_b` (string or null): the file holding the tensor on each side.
- `component` (string): its file's component folder (`unet`, `checkpoint-30`; `""`: the root).
- `quant_a`, `quant_b` (object or null): how the tensor is stored quantized on that side; its
  values were dequantized before comparing: `scheme` (`bnb_int8`: `weight` int8 and `SCB`,
  `w = weight * SCB[:, None] / 127`; `scaled`: codes and `weight_scale` /
  `weight_scale_inv` (+ `weight_zero_point`), per tensor, per row or per block; `affine`: codes
  and `scale` (+ `zero_point`), torch `int_repr`; `gptq`: `qweight`, `qzeros`, `scales`
  (+ `g_idx`), `(q - (z + 1)) * scale` per group; `awq`: the same in AWQ's packing order, `(q -
  z) * scale`), `bits` (int), `group_size` (int or null), `parts` (string array: the stored
  tensors folded into this one, the codes first). A recognised weight is one entry; its parts
  are not listed apart.

`stats` (all computed in float64; an element that is NaN or infinite on either side is left
out of the norms and counted in `nonfinite_a` / `nonfinite_b`; floats that would be NaN or
infinite are written as null):

| key                 | type          | meaning                                          |
|---------------------|---------------|--------------------------------------------------|
| `numel`             | int           | elements compared                                |
| `l2_a`, `l2_b`      | float         | L2 (Frobenius) norms of a and b                  |
| `l2_diff`           | float         | `‖b − a‖`                                        |
| `relative_change`   | float or null | `‖b − a‖ / ‖a‖`; null when `‖a‖ = 0` or `raw_codes_compared` |
| `max_abs_diff`      | float         | `max(abs(b − a))`                                    |
| `mean_abs_diff`     | float         | `mean(abs(b − a))`                                |
| `changed`           | int           | elements whose value differs (NaN = NaN)         |
| `fraction_changed`  | float         | `changed / numel`                                |
| `cosine_similarity` | float or null | `⟨a, b⟩ / (‖a‖ ‖b‖)`; null when a norm is 0 or `raw_codes_compared` |
| `nonfinite_a`, `nonfinite_b` | int  | NaN / inf elements on each side                  |
| `overlap`           | bool          | stats cover only the common region of two shapes |
| `raw_codes_compared` | bool         | one side holds integer codes whose scales were not recognised, compared with the other side's floats: the numbers do not measure a change of weights |
| `rank`              | object or null | for 2-D float tensors (below), else null        |

`rank` (singular values `s1 ≥ s2 ≥ …` of `D = b − a`; all-zero rows of `D` dropped first):
`effective` (int: number of `s_i > rtol·s1`, the numerical rank; a merged rank-r LoRA gives r),
`energy99` (int: smallest k with `s1² + … + sk² ≥ 0.99·‖D‖²`), `effective_min`,
`effective_max` (int: the true numerical rank lies in this interval, a guaranteed bound; both
equal `effective` when exact), `lower_bound` (bool: `effective_max > effective`, the sketch did
not see the end of the spectrum), `method` (`exact`: eigenvalues of the Gram matrix in float64,
when the smaller side of `D` is at most 512 or `m·n·min(m, n) ≤ 5·10⁸`; `randomized`:
randomized range finder with `sketch` columns, for bigger matrices), `rtol` (float, default
0.01), `sketch` (int: singular values computed), `singular_values` (up to 8 largest, floats).

Each `groups[]` / `blocks[]` / `components[]` object: `name` (module or block path; `(root)`
for top-level tensors; prefixed with the component folder, `unet/down_blocks.0`, when the
diff has more than one component; for `components[]` the component, `(root)` for the root),
`level` (`module`, `block` or `component`), `component` (string: the component folder, `""`
for the root), `status` (`added`/`removed` when every tensor of the group is, `unchanged` when
none changed, else `changed`), `tensors` (int), `changed` (int: tensors not unchanged),
`counts` (object: int per status), `l2_diff` (float: `sqrt` of the sum of squared `l2_diff` of
its tensors), `max_relative_change` (float or null), `numel_a`, `numel_b` (int), `names`
(string array: its tensors). Sorted: groups with added, removed or reshaped tensors first,
then by decreasing `l2_diff`, then by decreasing `max_relative_change`, then unchanged groups
by name.

Each `files[]` object: `path` (string), `status` (`added`, `removed`, `changed`, `unchanged`:
by the XXH3-128 checksum of the whole file), `component` (string), `size_a`, `size_b` (int or
null), `tensors_a`, `tensors_b` (int: tensors the file holds on each side; a file that holds
none, such as a `pytorch_model.bin` stored as bytes, is compared as bytes only),
`tensors_changed` (int: its tensors whose status is not `unchanged`), `json_changes` (array or
null: for a changed `.json` file, its key changes `{"path": "a.b", "status":
"added"|"removed"|"changed", "a", "b"}`, nested objects walked with dotted paths, at most 20),
`json_changes_total` (int or null: all key changes), `note` (string or null: not valid JSON,
too large to compare keys, or for a `*.safetensors.index.json` the `weight_map` summary, whose
entries are left out of `json_changes`).

Each `layout[]` object (a component whose tensors moved to another set of files):
`component`, `files_a`, `files_b` (string arrays: the component's tensor files), `moved` (int:
tensors now in another file), `tensors` (int: tensors on both sides), `changed` (int: tensors
not unchanged), `description` (`"re-sharded: 4 files -> 1, tensors unchanged"`).

`lora` (when one side holds `adapter_config.json` with LoRA factors and the other does not):
`adapter_side` (`"b"` for `diff BASE ADAPTER`; `"a"` reversed), `config` (`path`, `peft_type`,
`r`, `lora_alpha`, `use_rslora`, `use_dora`, `fan_in_fan_out`, `rank_pattern`,
`alpha_pattern`, `target_modules`, `base_model_name_or_path`), `modules` (one per target
module, sorted: `module` (path without `base_model.model.`), `base_tensor` (key of the paired
base weight, or null), `r`, `alpha`, `scale` (`alpha / r`, or `alpha / sqrt(r)` with rsLoRA;
`rank_pattern` / `alpha_pattern` applied), `shape`, `l2_delta` (`‖scale · B·A‖`),
`relative_change` (`‖ΔW‖ / ‖W‖`), `rank` (effective rank of `ΔW`: `r` for a LoRA update),
`stats` (the `stats` object of `W` against `W + ΔW`), `error`), `other_tensors` (string array:
adapter tensors that are not LoRA factors).
"""
