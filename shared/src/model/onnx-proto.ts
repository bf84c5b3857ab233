import { create } from "@bufbuild/protobuf";
import {
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  NodeProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
} from "onnx-buf";
import type { AttributeProto, NodeProto, TensorProto, ValueInfoProto } from "onnx-buf";

import { float16ToFloat32 } from "./float16.js";

/** Small constructors over onnx-buf's messages, so the graph builder reads like the math. */

export type Dim = number | string;
export type AttrValue = number | number[] | string;

export function floatTensor(name: string, shape: readonly number[], data: Float32Array): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: shape.map((d) => BigInt(d)),
    dataType: TensorProto_DataType.FLOAT,
    rawData: new Uint8Array(data.slice().buffer),
  });
}

/** A FLOAT16 tensor from its half-precision bits (see float16.ts). */
export function float16Tensor(name: string, shape: readonly number[], bits: Uint16Array): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: shape.map((d) => BigInt(d)),
    dataType: TensorProto_DataType.FLOAT16,
    rawData: new Uint8Array(bits.slice().buffer),
  });
}

/**
 * A FLOAT (or FLOAT16) initializer whose bytes live in an external data file (ONNX external data,
 * path relative to the model).
 */
export function externalFloatTensor(
  name: string,
  shape: readonly number[],
  ref: { location: string; offset: number; length: number },
  dataType: TensorProto_DataType.FLOAT | TensorProto_DataType.FLOAT16 = TensorProto_DataType.FLOAT,
): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: shape.map((d) => BigInt(d)),
    dataType,
    dataLocation: TensorProto_DataLocation.EXTERNAL,
    externalData: [
      create(StringStringEntryProtoSchema, { key: "location", value: ref.location }),
      create(StringStringEntryProtoSchema, { key: "offset", value: String(ref.offset) }),
      create(StringStringEntryProtoSchema, { key: "length", value: String(ref.length) }),
    ],
  });
}

/** location/offset/length of an external tensor, or null for one stored in the file. */
export function externalRef(t: TensorProto): { location: string; offset: number; length: number | null } | null {
  if (t.dataLocation !== TensorProto_DataLocation.EXTERNAL) return null;
  const get = (k: string) => t.externalData.find((e) => e.key === k)?.value;
  return { location: get("location") ?? "", offset: Number(get("offset") ?? 0), length: get("length") === undefined ? null : Number(get("length")) };
}

export function int64Tensor(name: string, shape: readonly number[], values: readonly number[]): TensorProto {
  const data = new BigInt64Array(values.map((v) => BigInt(v)));
  return create(TensorProtoSchema, {
    name,
    dims: shape.map((d) => BigInt(d)),
    dataType: TensorProto_DataType.INT64,
    rawData: new Uint8Array(data.buffer),
  });
}

/** Bytes per element of the float types a weight may have (FLOAT, FLOAT16); undefined for others. */
export function floatItemSize(dataType: number): 4 | 2 | undefined {
  if (dataType === Number(TensorProto_DataType.FLOAT)) return 4;
  if (dataType === Number(TensorProto_DataType.FLOAT16)) return 2;
  return undefined;
}

/**
 * Float32 contents of a FLOAT tensor, whichever field holds them; a FLOAT16 tensor upcast to
 * float32 (exact). Not for external data (the bytes are in another file).
 */
export function tensorFloats(t: TensorProto): Float32Array {
  if (t.dataType === Number(TensorProto_DataType.FLOAT16)) {
    if (t.dataLocation === TensorProto_DataLocation.EXTERNAL) throw new Error(`tensor ${t.name}: its float16 values are in external data`);
    // raw_data holds the little-endian bits; int32_data one value's bits per element.
    const bits =
      t.rawData.length > 0 ? new Uint16Array(new Uint8Array(t.rawData).buffer, 0, t.rawData.byteLength / 2) : Uint16Array.from(t.int32Data);
    return float16ToFloat32(bits);
  }
  if (t.dataType !== Number(TensorProto_DataType.FLOAT)) throw new Error(`tensor ${t.name} is not float32 or float16`);
  if (t.rawData.length > 0) {
    const copy = new Uint8Array(t.rawData);
    return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
  }
  return Float32Array.from(t.floatData);
}

export function valueInfo(name: string, elemType: TensorProto_DataType, dims: readonly Dim[]): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: "tensorType",
        value: create(TypeProto_TensorSchema, {
          elemType,
          shape: create(TensorShapeProtoSchema, {
            dim: dims.map((d) =>
              create(TensorShapeProto_DimensionSchema, {
                value: typeof d === "number" ? { case: "dimValue", value: BigInt(d) } : { case: "dimParam", value: d },
              }),
            ),
          }),
        }),
      },
    }),
  });
}

/** Dims of a ValueInfo: numbers for fixed dims, strings for symbolic ones, null if untyped. */
export function valueInfoDims(info: ValueInfoProto): Dim[] | null {
  if (info.type?.value.case !== "tensorType") return null;
  const shape = info.type.value.value.shape;
  if (!shape) return null;
  return shape.dim.map((d) => (d.value.case === "dimValue" ? Number(d.value.value) : (d.value.value ?? "?")));
}

export function valueInfoElemType(info: ValueInfoProto): number | null {
  return info.type?.value.case === "tensorType" ? info.type.value.value.elemType : null;
}

function attribute(name: string, value: AttrValue): AttributeProto {
  if (typeof value === "string") {
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.STRING, s: new TextEncoder().encode(value) });
  }
  if (Array.isArray(value)) {
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: value.map((v) => BigInt(v)) });
  }
  if (Number.isInteger(value)) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(value) });
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: value });
}

export function node(opType: string, name: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    name,
    input: inputs,
    output: outputs,
    attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
  });
}

export { TensorProto_DataType };
