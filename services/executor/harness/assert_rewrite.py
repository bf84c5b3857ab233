"""Rewrites `assert` statements of test code so they judge plain data only.

`assert f(x) == y` would call the candidate's `__eq__` (an always-True `__eq__` passes every
test); after rewriting it becomes `__rlmesh_assert(__rlmesh_cmp(("Eq",), [f(x), y]))`, which
converts both sides to plain builtin data first. Boolean structure (`not`, `and`, `or`) is kept
but every leaf is reduced to a real bool through plain data, so no candidate `__bool__` runs.
"""

import ast

ASSERT_NAME = "__rlmesh_assert"
CMP_NAME = "__rlmesh_cmp"
TRUTH_NAME = "__rlmesh_truth"


def _call(name, args, like):
    node = ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args, keywords=[])
    return ast.copy_location(node, like)


def _as_bool(node):
    """An expression equivalent to `bool(node)` that only ever inspects plain data."""
    if isinstance(node, ast.Compare):
        ops = ast.Tuple(elts=[ast.Constant(value=type(op).__name__) for op in node.ops], ctx=ast.Load())
        operands = ast.List(elts=[node.left, *node.comparators], ctx=ast.Load())
        return _call(CMP_NAME, [ops, operands], node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ast.copy_location(ast.UnaryOp(op=ast.Not(), operand=_as_bool(node.operand)), node)
    if isinstance(node, ast.BoolOp):
        return ast.copy_location(ast.BoolOp(op=node.op, values=[_as_bool(v) for v in node.values]), node)
    return _call(TRUTH_NAME, [node], node)


class _AssertRewriter(ast.NodeTransformer):
    def visit_Assert(self, node):
        self.generic_visit(node)
        call = _call(ASSERT_NAME, [_as_bool(node.test)], node)
        return ast.copy_location(ast.Expr(value=call), node)


def rewrite_asserts(source, filename):
    """Parses `source`, rewrites every assert (also inside functions), returns a code object."""
    tree = ast.parse(source, filename=filename, mode="exec")
    tree = _AssertRewriter().visit(tree)
    ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec", dont_inherit=True)
