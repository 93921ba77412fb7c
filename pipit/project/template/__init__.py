"""Tinybird's template language, the part its docs and the tutorials use, compiled to SQL
whose every request value is a bound ClickHouse `{placeholder:Type}`.

A template is SQL with `{{ expression }}`, `{% if %}`/`{% elif %}`/`{% else %}`/`{% end %}`
(`{% end if %}` too: Tornado, whose syntax Tinybird's is, reads only `end`) and
`{# comments #}`; `{{!`, `{%!` and `{#!` write a literal `{{`, `{%`, `{#`. A leading `%`
line (Tinybird's marker for "this SQL is a template") is dropped. Expressions are Python
syntax, checked against an allow-list of node types when the template is parsed and then
evaluated by a small interpreter here: never eval or exec, no attributes, no subscripts, no
arithmetic. Anything outside what is listed below is a TemplateError naming file and line
at parse time, never a surprise at request time.

Supported, with Tinybird's meaning (its docs: "Template functions", "Query parameters",
"Templating language"; where they are silent, Tinybird's own renderer `sql_template.py`
in the `tinybird` package was read for its behaviour):

- Typed parameters `String`, `Boolean`, `Int`/`Integer` (Int32), `Int8`..`Int256`,
  `UInt8`..`UInt256`, `Float32`, `Float64`, `Date`, `DateTime`, `DateTime64` (as
  `DateTime64(3)`), `Array(name, 'Type', default)`: `T(name, default, required=...,
  description=..., example=..., format=..., enum=[...], defined=...)`. The default is
  positional or `default=`; defaults and keyword values must be literals.
- `defined(x)` (x was sent), comparisons, `and`/`or`/`not`, `in`, literals and parameter
  names in `{% if %}` conditions; `{{ ... }}` inside `{% ... %}` reads as `( ... )`.
- `column(x, 'default')`, `columns(x, 'a,b')`, `symbol(x)` (also `Column`/`Symbol`):
  backquoted identifiers that must be among the columns `render` is given.
- `sql_and(col=..., col__op=..., ...)`, operators `eq` (none), `neq`, `gt`, `gte`, `lt`,
  `lte`, `in`, `not_in` (Tinybird's), and `like`, `not_like`, `ilike`, `not_ilike`.
- `error('message', code)` and `custom_error({...}, code)`: a RenderError for the caller.
- A bare `{{ name }}`: a String parameter.

Decisions where Tinybird's docs are silent or where Pipit differs on purpose:

- A typed parameter with no default that the request does not send is an error for the
  caller, "missing required parameter", as in Tinybird (its renderer raises "Required
  parameter is not defined. Check the parameters ..."). So session_insights'
  `AND user_id = {{String(user_id)}}` makes user_id required. A `Boolean` without default
  reads as false (Tinybird's boolean()), and `defined=False` lets a use be absent: it
  evaluates to None (sql_and then leaves its condition out).
- `required=True` is enforced: a request without that parameter is refused even when the
  parameter has a default (Tinybird keeps it as documentation only). `Parameter.required`
  is true for those and for parameters a request can never do without: no default and used
  outside every `{% if %}` (so the caller's API can say so up front).
- A parameter has one default: a use without a default takes the one another use gives.
  Two different defaults, descriptions, enums or required flags for one name, or a name
  used both as an Array and as a scalar, are TemplateErrors. A name used with two scalar
  types gets one placeholder per type.
- In a condition a bare name is what the request sent (converted to the parameter's type)
  or None, not the default, as in Tinybird; an ordering comparison with None is false (as
  SQL's NULL) rather than an error.
- Values are bound, never spliced: `{{Boolean(x)}}` is `{x:Bool}` (Tinybird splices 1/0);
  `DateTime` values are UTC `YYYY-MM-DD HH:MM:SS` (a bare date is its first second, as the
  built-in pipes read it), `DateTime64` keeps milliseconds.
- `sql_and` with every value absent renders `1` (Tinybird renders nothing, which breaks the
  SQL around it), and its conditions are parenthesised as one.
- `column('a.b')` is the one identifier `a.b` (a Nested column), not `a`.`b`.
- `error()` and `custom_error()` take literal arguments and an HTTP status from 400 to 599
  (default 400); `custom_error`'s dict is the response body.
- `q`, `format` and `token` are refused as parameter names: the pipe API reads them itself.

Left out (a TemplateError says so): `{% for %}`, `{% set %}` and the other Tornado
statements; `split_to_array`, `enumerate_with_last`, `date_diff_*`, `day_diff`,
`sql_unescape`, `JSON`, `table`, `tb_secret`/`tb_var`, `max_threads`, `cache_ttl`,
`activate`, `backend_hint`, `columns(..., fn=)`; arithmetic, attributes and subscripts.
"""

from pipit.project.template.compiled import Rendered, Template
from pipit.project.template.errors import RenderError, TemplateError
from pipit.project.template.parameters import Parameter

__all__ = ["Parameter", "RenderError", "Rendered", "Template", "TemplateError"]
