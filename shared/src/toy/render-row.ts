import type { Instance } from "./family.js";
import type { PyValue } from "./python-values.js";
import { pyRepr, pyStr } from "./python-values.js";
import type { TaskRow } from "./task-row.js";
import { fencePython } from "./task-row.js";

/** "function": `def f(x)` checked by asserts; "program": reads stdin, prints, checked by stdio. */
export type TaskForm = "function" | "program";

export const ENTRY_POINT = "f";

const READERS: Record<Instance["inputType"], { phrase: string; code: string; stdin(v: PyValue): string }> = {
  int: { phrase: "reads an integer", code: "int(input())", stdin: (v) => `${pyStr(v)}\n` },
  str: { phrase: "reads a string", code: "input()", stdin: (v) => `${pyStr(v)}\n` },
  intlist: {
    phrase: "reads a line of integers",
    code: "list(map(int, input().split()))",
    stdin: (v) => `${(v as number[]).join(" ")}\n`,
  },
};

export function renderPrompt(inst: Instance, form: TaskForm): string {
  const v = inst.variable;
  return form === "function"
    ? `Write a function ${ENTRY_POINT}(${v}) that ${inst.clause("returns")}.`
    : `Write a program that ${READERS[inst.inputType].phrase} ${v}, ${inst.clause("prints")}.`;
}

export function renderCode(inst: Instance, form: TaskForm): string {
  const v = inst.variable;
  return form === "function"
    ? `def ${ENTRY_POINT}(${v}):\n    return ${inst.expr}`
    : `${v} = ${READERS[inst.inputType].code}\nprint(${inst.expr})`;
}

export function renderTests(inst: Instance, form: TaskForm, inputs: readonly PyValue[]): TaskRow["tests"] {
  const expectedOf = (input: PyValue): PyValue => {
    const expected = inst.evaluate(input);
    if (expected === undefined) throw new Error(`input ${pyRepr(input)} is not valid for ${inst.key}`);
    return expected;
  };
  return form === "function"
    ? {
        kind: "assert",
        tests: inputs.map((input) => `assert ${ENTRY_POINT}(${pyRepr(input)}) == ${pyRepr(expectedOf(input))}`),
        entry_point: ENTRY_POINT,
      }
    : {
        kind: "stdio",
        cases: inputs.map((input) => ({ input: READERS[inst.inputType].stdin(input), output: `${pyStr(expectedOf(input))}\n` })),
      };
}

export function renderRow(inst: Instance, form: TaskForm, inputs: readonly PyValue[], taskId: string, split: string): TaskRow {
  return {
    task_id: taskId,
    prompt: renderPrompt(inst, form),
    tests: renderTests(inst, form, inputs),
    reference: fencePython(renderCode(inst, form)),
    meta: { family: inst.template.family, template: inst.template.id, split, form, instance: inst.key },
  };
}
