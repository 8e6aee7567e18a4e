//! Upstream's admission reinvocation (`apiserver/pkg/admission/reinvocation.go` and the
//! webhook/policy `reinvokeContext`s): when a mutating webhook or MutatingAdmissionPolicy
//! changes the object, the whole mutating chain runs once more — every built-in plugin, and
//! of the webhooks/policies only those with `reinvocationPolicy: IfNeeded` that ran before
//! the change (or before a later plugin changed the object since their plugin last ran).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

/// `admission.ReinvocationContext` of one request.
#[derive(Default)]
pub struct Reinvocation {
    is_reinvoke: AtomicBool,
    should_reinvoke: AtomicBool,
    plugins: Mutex<HashMap<&'static str, PluginState>>,
}

/// One reinvocable plugin's state (upstream `webhookReinvokeContext`/`policyReinvokeContext`).
#[derive(Default)]
struct PluginState {
    /// `IfNeeded` entries invoked since the object last changed.
    previously_invoked: HashSet<String>,
    /// Entries to run in the reinvocation pass.
    reinvoke: HashSet<String>,
    /// The object as this plugin left it.
    last_output: Option<Value>,
}

impl Reinvocation {
    /// Whether this is the second (reinvocation) pass.
    pub fn is_reinvoke(&self) -> bool {
        self.is_reinvoke.load(Ordering::Relaxed)
    }

    /// Whether a plugin asked for a second pass.
    pub fn should_reinvoke(&self) -> bool {
        self.should_reinvoke.load(Ordering::Relaxed)
    }

    pub(super) fn set_is_reinvoke(&self) {
        self.is_reinvoke.store(true, Ordering::Relaxed);
    }

    fn with<R>(&self, plugin: &'static str, f: impl FnOnce(&mut PluginState) -> R) -> R {
        let mut m = self
            .plugins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(m.entry(plugin).or_default())
    }

    /// At the start of a plugin's pass: in the reinvocation pass, an object changed since the
    /// plugin last ran makes every `IfNeeded` entry it ran eligible again.
    pub fn begin(&self, plugin: &'static str, obj: &Value) {
        if !self.is_reinvoke() {
            return;
        }
        self.with(plugin, |s| {
            if s.last_output.as_ref() != Some(obj) {
                require_previous(s);
            }
        });
    }

    /// Whether `entry` runs in this pass (always in the first one).
    pub fn runs(&self, plugin: &'static str, entry: &str) -> bool {
        !self.is_reinvoke() || self.with(plugin, |s| s.reinvoke.contains(entry))
    }

    /// After `entry` ran: a change asks for the second pass and re-arms the `IfNeeded`
    /// entries that ran before it.
    pub fn ran(&self, plugin: &'static str, entry: &str, if_needed: bool, changed: bool) {
        if changed {
            self.should_reinvoke.store(true, Ordering::Relaxed);
        }
        self.with(plugin, |s| {
            if changed {
                require_previous(s);
            }
            if if_needed {
                s.previously_invoked.insert(entry.to_string());
            }
        });
    }

    /// At the end of a plugin's pass: the object as it leaves the plugin.
    pub fn end(&self, plugin: &'static str, obj: &Value) {
        self.with(plugin, |s| s.last_output = Some(obj.clone()));
    }
}

fn require_previous(s: &mut PluginState) {
    let prev = std::mem::take(&mut s.previously_invoked);
    s.reinvoke.extend(prev);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_change_rearms_earlier_if_needed_entries_once() {
        let r = Reinvocation::default();
        let obj = serde_json::json!({"a": 1});
        r.begin("W", &obj);
        assert!(r.runs("W", "first"));
        r.ran("W", "first", true, false);
        r.ran("W", "never", false, false);
        r.ran("W", "second", false, true);
        r.end("W", &obj);
        assert!(r.should_reinvoke());
        r.set_is_reinvoke();
        r.begin("W", &obj);
        assert!(r.runs("W", "first"));
        assert!(!r.runs("W", "never"));
        assert!(!r.runs("W", "second"));
    }

    #[test]
    fn no_change_no_second_pass_and_other_plugins_changes_rearm() {
        let r = Reinvocation::default();
        let obj = serde_json::json!({"a": 1});
        r.begin("P", &obj);
        r.ran("P", "p", true, false);
        r.end("P", &obj);
        assert!(!r.should_reinvoke());
        // A webhook after the policy plugin changes the object.
        r.ran("W", "w", false, true);
        r.set_is_reinvoke();
        assert!(!r.runs("P", "p"));
        r.begin("P", &serde_json::json!({"a": 2}));
        assert!(r.runs("P", "p"));
    }
}
