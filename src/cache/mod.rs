//! What the controller's cache keeps of each PasswordResetOperation: its metadata, and its
//! spec and status packed into one allocation (`pack`), unpacked for the reconcile that
//! reads them.
//!
//! Why: the reflector keeps every watched object for as long as it exists. As the full
//! resource that was an 872-byte struct, four conditions and about 26 strings, each its
//! own allocation, the largest part of the operator's memory at 10,000 resources
//! (bench/README.md, "Memory: where it goes"). Packed, spec and status are one buffer of a
//! few hundred bytes. A poll unpacks them once; the gauges read them in place.

mod pack;

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

use crate::api::{PasswordResetOperation as Pro, PasswordResetOperationSpec, PasswordResetOperationStatus};

/// kubectl keeps a full copy of the object in this annotation; the cache does not need it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A PasswordResetOperation as the cache holds it: same kind, same API, a smaller body.
#[derive(Clone, Debug, PartialEq)]
pub struct Cached {
    pub metadata: ObjectMeta,
    packed: Box<[u8]>,
}

impl Cached {
    /// The spec and status, as the resource had them.
    pub fn unpack(&self) -> (PasswordResetOperationSpec, Option<PasswordResetOperationStatus>) {
        pack::unpack(&self.packed)
    }

    /// The whole resource again (what the cache dropped from metadata stays dropped).
    #[cfg(test)]
    pub fn to_resource(&self) -> Pro {
        let (spec, status) = self.unpack();
        Pro { metadata: self.metadata.clone(), spec, status }
    }

    /// Graph's `status` and the Ready condition's reason, without unpacking.
    pub fn state_and_ready_reason(&self) -> (Option<&str>, Option<&str>) {
        pack::state_and_ready_reason(&self.packed)
    }
}

impl From<Pro> for Cached {
    fn from(obj: Pro) -> Self {
        let Pro { mut metadata, spec, status } = obj;
        slim(&mut metadata);
        Cached { metadata, packed: pack::pack(&spec, status.as_ref()) }
    }
}

/// What the cache keeps of metadata: not `managedFields` (dropped, not emptied: an emptied
/// Vec keeps its buffer) or kubectl's copy of the object, and lists without the spare room
/// deserializing leaves (a Vec grows to 4 entries for 1 to 4).
fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    if let Some(owners) = meta.owner_references.as_mut() {
        owners.shrink_to_fit();
    }
    if let Some(finalizers) = meta.finalizers.as_mut() {
        finalizers.shrink_to_fit();
    }
}

impl<'de> Deserialize<'de> for Cached {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Pro::deserialize(deserializer).map(Cached::from)
    }
}

impl Resource for Cached {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Pro::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Pro::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Pro::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Pro::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests;
