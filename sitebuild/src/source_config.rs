//! Reads a Netlify function's in-source `export const config = {…}` without running the code.
//!
//! Netlify reads this object statically, so only literals are allowed: strings, numbers,
//! booleans, `null`, arrays and objects of those. We read it from esbuild's *transform* output
//! (types stripped, comments dropped, one top-level statement per line starting in column 0),
//! which keeps this a small literal parser rather than a JavaScript parser: a value that is
//! anything else — a variable, a call, a spread, a template with `${}` — is reported with the
//! field it sits in.

use serde_json::{Map, Value};

/// Why a config value could not be read statically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonStatic {
    /// Dotted path of the field (`path`, `rateLimit.windowSize`, `path[1]`); `config` for the
    /// object itself.
    pub field: String,
    /// A short description of what was found.
    pub found: String,
}

/// The `config` export of a transformed ES module, if it has one.
pub fn extract_config(transformed: &str) -> Result<Option<Value>, NonStatic> {
    // `export { a, config };` lists may span lines; they always start in column 0.
    let exported_by_list = transformed
        .match_indices("export {")
        .filter(|(i, _)| *i == 0 || transformed.as_bytes()[i - 1] == b'\n')
        .any(|(i, _)| {
            let list = &transformed[i + "export {".len()..];
            list[..list.find('}').unwrap_or(list.len())]
                .split(',')
                .any(|name| name.trim() == "config" || name.trim().ends_with(" as config"))
        });
    let mut offset = 0;
    for line in transformed.split_inclusive('\n') {
        let decl = [
            "export const config",
            "export let config",
            "export var config",
        ]
        .iter()
        .find(|p| starts_decl(line, p))
        .or_else(|| {
            ["const config", "let config", "var config"]
                .iter()
                .find(|p| exported_by_list && starts_decl(line, p))
        });
        if let Some(prefix) = decl {
            let after = &line[prefix.len()..];
            let Some(eq) = after.find('=') else {
                return Err(NonStatic {
                    field: "config".into(),
                    found: "a declaration without a value".into(),
                });
            };
            let start = offset + prefix.len() + eq + 1;
            let mut p = Parser {
                src: transformed,
                pos: start,
            };
            let value = p.value("")?;
            p.skip_ws_same_statement();
            match p.peek() {
                None | Some(';') | Some('\n') => return Ok(Some(value)),
                Some(_) => {
                    return Err(NonStatic {
                        field: "config".into(),
                        found: format!("an expression `{}`", p.snippet(start)),
                    });
                }
            }
        }
        offset += line.len();
    }
    Ok(None)
}

fn starts_decl(line: &str, prefix: &str) -> bool {
    line.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with([' ', '=', ':']))
}

/// The cron expression of a Netlify v1 `schedule("…", handler)` helper call, if the module
/// imports `@netlify/functions` and calls it with a string literal.
pub fn schedule_helper(transformed: &str) -> Option<String> {
    if !transformed.contains("@netlify/functions") {
        return None;
    }
    let bytes = transformed.as_bytes();
    let mut from = 0;
    while let Some(i) = transformed[from..].find("schedule(") {
        let at = from + i;
        from = at + 1;
        let before = at.checked_sub(1).map(|b| bytes[b]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.')
        {
            continue;
        }
        let mut p = Parser {
            src: transformed,
            pos: at + "schedule(".len(),
        };
        p.skip_ws();
        if let Some(q @ ('"' | '\'')) = p.peek()
            && let Ok(s) = p.string(q)
        {
            return Some(s);
        }
    }
    None
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        loop {
            let rest = self.rest();
            if rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else if rest.starts_with("/*") {
                self.pos += rest.find("*/").map_or(rest.len(), |i| i + 2);
            } else if rest.starts_with(char::is_whitespace) {
                self.bump();
            } else {
                return;
            }
        }
    }

    /// Skips spaces but not newlines, so a statement's end is visible.
    fn skip_ws_same_statement(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.bump();
        }
    }

    fn snippet(&self, from: usize) -> String {
        let s: String = self.src[from..]
            .trim_start()
            .chars()
            .take_while(|c| *c != '\n')
            .take(60)
            .collect();
        s.trim().to_string()
    }

    fn non_static(&self, field: &str, found: String) -> NonStatic {
        NonStatic {
            field: if field.is_empty() {
                "config".into()
            } else {
                field.into()
            },
            found,
        }
    }

    fn value(&mut self, field: &str) -> Result<Value, NonStatic> {
        self.skip_ws();
        let start = self.pos;
        let value = match self.peek() {
            Some('{') => self.object(field)?,
            Some('[') => self.array(field)?,
            Some(q @ ('"' | '\'')) => {
                Value::String(self.string(q).map_err(|e| self.non_static(field, e))?)
            }
            Some('`') => Value::String(self.template(field)?),
            Some(c) if c == '-' || c == '.' || c.is_ascii_digit() => self.number(field)?,
            Some(c) if is_ident_start(c) => {
                let ident = self.ident();
                match ident.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" | "undefined" => Value::Null,
                    _ => {
                        let what = if self.rest().trim_start().starts_with('(') {
                            format!("a call `{ident}(…)`")
                        } else if self
                            .rest()
                            .trim_start()
                            .starts_with([',', '}', ']', ';', '\n'])
                        {
                            format!("the variable `{ident}`")
                        } else {
                            format!("an expression `{}`", self.snippet(start))
                        };
                        return Err(self.non_static(field, what));
                    }
                }
            }
            Some(_) => {
                return Err(
                    self.non_static(field, format!("an expression `{}`", self.snippet(start)))
                );
            }
            None => return Err(self.non_static(field, "nothing".into())),
        };
        // Anything but a separator after a literal (`"/a" + x`, `f()`) is an expression.
        let before = self.pos;
        self.skip_ws_same_statement();
        let next = self.peek();
        self.pos = before;
        match next {
            None | Some(',' | '}' | ']' | ';' | '\n' | '\r') => Ok(value),
            Some(_) => {
                Err(self.non_static(field, format!("an expression `{}`", self.snippet(start))))
            }
        }
    }

    fn object(&mut self, field: &str) -> Result<Value, NonStatic> {
        self.bump();
        let mut map = Map::new();
        loop {
            self.skip_ws();
            let key_start = self.pos;
            let key = match self.peek() {
                Some('}') => {
                    self.bump();
                    return Ok(Value::Object(map));
                }
                Some(q @ ('"' | '\'')) => self.string(q).map_err(|e| self.non_static(field, e))?,
                Some(c) if is_ident_start(c) || c.is_ascii_digit() => self.ident(),
                Some('.') if self.rest().starts_with("...") => {
                    return Err(
                        self.non_static(field, format!("a spread `{}`", self.snippet(key_start)))
                    );
                }
                _ => {
                    return Err(self.non_static(
                        field,
                        format!("a computed key `{}`", self.snippet(key_start)),
                    ));
                }
            };
            let sub = join(field, &key);
            self.skip_ws();
            match self.peek() {
                Some(':') => {
                    self.bump();
                }
                Some(',' | '}') => {
                    return Err(self.non_static(
                        &sub,
                        format!("a shorthand property referring to the variable `{key}`"),
                    ));
                }
                _ => {
                    return Err(self.non_static(
                        &sub,
                        format!("a method or accessor `{}`", self.snippet(key_start)),
                    ));
                }
            }
            let v = self.value(&sub)?;
            map.insert(key, v);
            self.skip_ws();
            match self.bump() {
                Some(',') => {}
                Some('}') => return Ok(Value::Object(map)),
                _ => {
                    return Err(self.non_static(field, "an unterminated object".into()));
                }
            }
        }
    }

    fn array(&mut self, field: &str) -> Result<Value, NonStatic> {
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                self.bump();
                return Ok(Value::Array(items));
            }
            let sub = format!(
                "{}[{}]",
                if field.is_empty() { "config" } else { field },
                items.len()
            );
            if self.rest().starts_with("...") {
                return Err(self.non_static(&sub, format!("a spread `{}`", self.snippet(self.pos))));
            }
            items.push(self.value(&sub)?);
            self.skip_ws();
            match self.bump() {
                Some(',') => {}
                Some(']') => return Ok(Value::Array(items)),
                _ => return Err(self.non_static(field, "an unterminated array".into())),
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<String, String> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err("an unterminated string".into()),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => out.push(self.escape()?),
                Some(c) => out.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let c = self.bump().ok_or("an unterminated string")?;
        Ok(match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            '0' => '\0',
            'x' => {
                let hex: String = (0..2).filter_map(|_| self.bump()).collect();
                u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or("a bad \\x escape")?
            }
            'u' => {
                let hex: String = if self.peek() == Some('{') {
                    self.bump();
                    let h: String = std::iter::from_fn(|| self.bump())
                        .take_while(|c| *c != '}')
                        .collect();
                    h
                } else {
                    (0..4).filter_map(|_| self.bump()).collect()
                };
                u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or("a bad \\u escape")?
            }
            other => other,
        })
    }

    fn template(&mut self, field: &str) -> Result<String, NonStatic> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.non_static(field, "an unterminated template".into())),
                Some('`') => return Ok(out),
                Some('$') if self.peek() == Some('{') => {
                    return Err(self.non_static(
                        field,
                        format!("a template literal with ${{…}} `{}`", self.snippet(start)),
                    ));
                }
                Some('\\') => out.push(self.escape().map_err(|e| self.non_static(field, e))?),
                Some(c) => out.push(c),
            }
        }
    }

    fn number(&mut self, field: &str) -> Result<Value, NonStatic> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.bump();
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            self.bump();
        }
        let text: String = self.src[start..self.pos]
            .chars()
            .filter(|c| *c != '_')
            .collect();
        let parsed = if let Some(hex) = text.strip_prefix("0x") {
            i64::from_str_radix(hex, 16).ok().map(Value::from)
        } else if let Ok(i) = text.parse::<i64>() {
            Some(Value::from(i))
        } else {
            text.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
        };
        parsed.ok_or_else(|| {
            self.non_static(field, format!("an expression `{}`", self.snippet(start)))
        })
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
        {
            self.bump();
        }
        self.src[start..self.pos].to_string()
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn join(field: &str, key: &str) -> String {
    if field.is_empty() {
        key.to_string()
    } else {
        format!("{field}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literal_configs_are_read() {
        let cases: &[(&str, Value)] = &[
            (
                "export const config = { path: \"/a\" };\n",
                json!({"path": "/a"}),
            ),
            (
                "import x from \"y\";\nexport const config = {\n  path: [\"/a\", '/b/:id'],\n  method: [\"GET\", \"POST\"],\n  preferStatic: true,\n  rateLimit: { windowLimit: 10, windowSize: 60, aggregateBy: [\"ip\", \"domain\"] }\n};\nexport default () => 1;\n",
                json!({"path": ["/a", "/b/:id"], "method": ["GET", "POST"], "preferStatic": true,
                       "rateLimit": {"windowLimit": 10, "windowSize": 60, "aggregateBy": ["ip", "domain"]}}),
            ),
            (
                "const config = { schedule: `@daily`, \"excludedPath\": \"/x\\u0041\" };\nexport {\n  config\n};\n",
                json!({"schedule": "@daily", "excludedPath": "/xA"}),
            ),
            (
                "export const config = { a: -1.5, b: null, c: [] }\n",
                json!({"a": -1.5, "b": null, "c": []}),
            ),
            ("export default () => 1;\n", Value::Null),
            // A nested `config` is not the module's export.
            (
                "function f() {\n  const config = { path: g() };\n}\n",
                Value::Null,
            ),
        ];
        for (src, want) in cases {
            let got = extract_config(src).unwrap().unwrap_or(Value::Null);
            assert_eq!(&got, want, "{src}");
        }
    }

    #[test]
    fn non_static_values_name_their_field() {
        let cases = [
            (
                "export const config = { path: getPath() };\n",
                "path",
                "a call `getPath(…)`",
            ),
            (
                "export const config = { path: [\"/a\", base + \"/b\"] };\n",
                "path[1]",
                "base",
            ),
            (
                "export const config = { path: \"/a\" + suffix };\n",
                "path",
                "\"/a\" + suffix",
            ),
            (
                "export const config = { rateLimit: { windowLimit: LIMIT } };\n",
                "rateLimit.windowLimit",
                "the variable `LIMIT`",
            ),
            ("export const config = { path };\n", "path", "shorthand"),
            (
                "export const config = { ...base, path: \"/a\" };\n",
                "config",
                "spread",
            ),
            (
                "export const config = { path: `/a/${x}` };\n",
                "path",
                "template",
            ),
            (
                "export const config = makeConfig();\n",
                "config",
                "a call `makeConfig(…)`",
            ),
        ];
        for (src, field, found) in cases {
            let err = extract_config(src).unwrap_err();
            assert_eq!(err.field, field, "{src}");
            assert!(err.found.contains(found), "{src}: {}", err.found);
        }
    }

    #[test]
    fn schedule_helper_cron_is_found_only_with_the_netlify_import() {
        let with = "import { schedule } from \"@netlify/functions\";\nexport const handler = schedule(\"@hourly\", async () => ({ statusCode: 200 }));\n";
        assert_eq!(schedule_helper(with).as_deref(), Some("@hourly"));
        let without = "export const handler = schedule(\"@hourly\", h);\n";
        assert_eq!(schedule_helper(without), None);
        let member = "import \"@netlify/functions\";\nx.schedule(\"@hourly\");\n";
        assert_eq!(schedule_helper(member), None);
    }
}
