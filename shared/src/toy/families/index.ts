import type { Family } from "../family.js";
import { arithmeticFamily } from "./arithmetic.js";
import { conditionalsFamily } from "./conditionals.js";
import { listsFamily } from "./lists.js";
import { loopsFamily } from "./loops.js";
import { stringsFamily } from "./strings.js";

/** Every task family, in the order rows are drawn. */
export const TOY_FAMILIES: readonly Family[] = [arithmeticFamily, stringsFamily, listsFamily, conditionalsFamily, loopsFamily];
