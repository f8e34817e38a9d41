// google.protobuf.Struct as @grpc/proto-loader represents it (with
// `oneofs: true`: every Value names its `kind`), to and from plain JSON.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface PbValue {
  kind?: string;
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: PbStruct;
  listValue?: { values?: PbValue[] };
}

export interface PbStruct {
  fields?: { [key: string]: PbValue };
}

export function fromValue(v: PbValue | undefined): Json {
  switch (v?.kind) {
    case "numberValue":
      return v.numberValue ?? 0;
    case "stringValue":
      return v.stringValue ?? "";
    case "boolValue":
      return v.boolValue ?? false;
    case "structValue":
      return fromStruct(v.structValue);
    case "listValue":
      return (v.listValue?.values ?? []).map(fromValue);
    default:
      return null;
  }
}

export function fromStruct(s: PbStruct | undefined | null): { [key: string]: Json } {
  const out: { [key: string]: Json } = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = fromValue(v);
  return out;
}

export function toValue(j: Json): PbValue {
  if (j === null) return { kind: "nullValue", nullValue: "NULL_VALUE" };
  if (typeof j === "number") return { kind: "numberValue", numberValue: j };
  if (typeof j === "string") return { kind: "stringValue", stringValue: j };
  if (typeof j === "boolean") return { kind: "boolValue", boolValue: j };
  if (Array.isArray(j)) return { kind: "listValue", listValue: { values: j.map(toValue) } };
  return { kind: "structValue", structValue: toStruct(j) };
}

export function toStruct(j: { [key: string]: Json }): PbStruct {
  const fields: { [key: string]: PbValue } = {};
  for (const [k, v] of Object.entries(j)) fields[k] = toValue(v);
  return { fields };
}
