"""Kernel macros that define objects at file scope, and how to declare what they define.

`static DEFINE_MUTEX(lock);` defines `struct mutex lock`: a patched function that takes the lock
must reach the running kernel's `lock`, never a copy, so the module declares it `extern` and
the relocation rewrite points it at the kernel's symbol. The C type of each definition is the
one the macro expands to in Linux 6.1 (the header named beside each entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ObjectKind = Literal["variable", "per-cpu", "static-key", "static-call"]


@dataclass(frozen=True, slots=True)
class MacroObject:
    """One object a defining macro creates: its name and its declaration, from the arguments."""

    name: str  # template over the arguments: "{0}", "dev_attr_{0}"
    declaration: str  # template: "struct mutex {name}"
    kind: ObjectKind = "variable"


def _one(decl: str, kind: ObjectKind = "variable") -> tuple[MacroObject, ...]:
    return (MacroObject("{0}", decl, kind),)


# Macro -> the objects it defines. Per-CPU macros declare through DECLARE_PER_CPU*, which
# is what the headers do for per-CPU variables of other files.
DEFINING_MACROS: dict[str, tuple[MacroObject, ...]] = {
    # include/linux/mutex.h, spinlock_types.h, rwlock_types.h, seqlock.h, rwsem.h, semaphore.h
    "DEFINE_MUTEX": _one("struct mutex {name}"),
    "DEFINE_SPINLOCK": _one("spinlock_t {name}"),
    "DEFINE_RAW_SPINLOCK": _one("raw_spinlock_t {name}"),
    "DEFINE_RWLOCK": _one("rwlock_t {name}"),
    "DEFINE_SEQLOCK": _one("seqlock_t {name}"),
    "DECLARE_RWSEM": _one("struct rw_semaphore {name}"),
    "DEFINE_SEMAPHORE": _one("struct semaphore {name}"),
    # include/linux/list.h, wait.h, completion.h, idr.h, xarray.h, workqueue.h, timer.h
    "LIST_HEAD": _one("struct list_head {name}"),
    "HLIST_HEAD": _one("struct hlist_head {name}"),
    "DECLARE_WAIT_QUEUE_HEAD": _one("struct wait_queue_head {name}"),
    "DECLARE_COMPLETION": _one("struct completion {name}"),
    "DEFINE_IDR": _one("struct idr {name}"),
    "DEFINE_IDA": _one("struct ida {name}"),
    "DEFINE_XARRAY": _one("struct xarray {name}"),
    "DEFINE_XARRAY_ALLOC": _one("struct xarray {name}"),
    "DEFINE_XARRAY_ALLOC1": _one("struct xarray {name}"),
    "DEFINE_XARRAY_FLAGS": _one("struct xarray {name}"),
    "DECLARE_WORK": _one("struct work_struct {name}"),
    "DECLARE_DELAYED_WORK": _one("struct delayed_work {name}"),
    "DECLARE_DEFERRABLE_WORK": _one("struct delayed_work {name}"),
    "DEFINE_TIMER": _one("struct timer_list {name}"),
    # include/linux/ratelimit_types.h, srcutree.h, notifier.h, hashtable.h, types.h
    "DEFINE_RATELIMIT_STATE": _one("struct ratelimit_state {name}"),
    "DEFINE_SRCU": _one("struct srcu_struct {name}"),
    "DEFINE_STATIC_SRCU": _one("struct srcu_struct {name}"),
    "BLOCKING_NOTIFIER_HEAD": _one("struct blocking_notifier_head {name}"),
    "ATOMIC_NOTIFIER_HEAD": _one("struct atomic_notifier_head {name}"),
    "RAW_NOTIFIER_HEAD": _one("struct raw_notifier_head {name}"),
    "SRCU_NOTIFIER_HEAD": _one("struct srcu_notifier_head {name}"),
    "DEFINE_HASHTABLE": _one("struct hlist_head {name}[1 << ({1})]"),
    "DECLARE_BITMAP": _one("unsigned long {name}[BITS_TO_LONGS({1})]"),
    # include/linux/jump_label.h
    "DEFINE_STATIC_KEY_FALSE": _one("struct static_key_false {name}", "static-key"),
    "DEFINE_STATIC_KEY_TRUE": _one("struct static_key_true {name}", "static-key"),
    "DEFINE_STATIC_KEY_FALSE_RO": _one("struct static_key_false {name}", "static-key"),
    "DEFINE_STATIC_KEY_TRUE_RO": _one("struct static_key_true {name}", "static-key"),
    # include/linux/static_call.h
    "DEFINE_STATIC_CALL": _one("DECLARE_STATIC_CALL({0}, {1})", "static-call"),
    "DEFINE_STATIC_CALL_NULL": _one("DECLARE_STATIC_CALL({0}, {1})", "static-call"),
    "DEFINE_STATIC_CALL_RET0": _one("DECLARE_STATIC_CALL({0}, {1})", "static-call"),
    # include/linux/percpu-defs.h: the DECLARE_ twin of each DEFINE_.
    "DEFINE_PER_CPU": (MacroObject("{1}", "DECLARE_PER_CPU({0}, {1})", "per-cpu"),),
    "DEFINE_PER_CPU_SHARED_ALIGNED": (
        MacroObject("{1}", "DECLARE_PER_CPU_SHARED_ALIGNED({0}, {1})", "per-cpu"),
    ),
    "DEFINE_PER_CPU_ALIGNED": (MacroObject("{1}", "DECLARE_PER_CPU_ALIGNED({0}, {1})", "per-cpu"),),
    "DEFINE_PER_CPU_READ_MOSTLY": (
        MacroObject("{1}", "DECLARE_PER_CPU_READ_MOSTLY({0}, {1})", "per-cpu"),
    ),
    "DEFINE_PER_CPU_PAGE_ALIGNED": (
        MacroObject("{1}", "DECLARE_PER_CPU_PAGE_ALIGNED({0}, {1})", "per-cpu"),
    ),
    "DEFINE_PER_CPU_FIRST": (MacroObject("{1}", "DECLARE_PER_CPU_FIRST({0}, {1})", "per-cpu"),),
    # include/linux/fs.h, seq_file.h, debugfs.h: file operations made from a name.
    "DEFINE_SHOW_ATTRIBUTE": (MacroObject("{0}_fops", "const struct file_operations {name}"),),
    "DEFINE_SEQ_ATTRIBUTE": (MacroObject("{0}_fops", "const struct file_operations {name}"),),
    "DEFINE_PROC_SHOW_ATTRIBUTE": (MacroObject("{0}_proc_ops", "const struct proc_ops {name}"),),
    "DEFINE_SIMPLE_ATTRIBUTE": (MacroObject("{0}", "const struct file_operations {name}"),),
    "DEFINE_DEBUGFS_ATTRIBUTE": (MacroObject("{0}", "const struct file_operations {name}"),),
    # include/linux/device.h, sysfs.h
    "DEVICE_ATTR": (MacroObject("dev_attr_{0}", "struct device_attribute {name}"),),
    "DEVICE_ATTR_RW": (MacroObject("dev_attr_{0}", "struct device_attribute {name}"),),
    "DEVICE_ATTR_RO": (MacroObject("dev_attr_{0}", "struct device_attribute {name}"),),
    "DEVICE_ATTR_WO": (MacroObject("dev_attr_{0}", "struct device_attribute {name}"),),
    "DEVICE_ATTR_ADMIN_RW": (MacroObject("dev_attr_{0}", "struct device_attribute {name}"),),
    "DEVICE_ATTR_ADMIN_RO": (MacroObject("dev_attr_{0}", "struct device_attribute {name}"),),
    "DRIVER_ATTR_RW": (MacroObject("driver_attr_{0}", "struct driver_attribute {name}"),),
    "DRIVER_ATTR_RO": (MacroObject("driver_attr_{0}", "struct driver_attribute {name}"),),
    "DRIVER_ATTR_WO": (MacroObject("driver_attr_{0}", "struct driver_attribute {name}"),),
    "CLASS_ATTR_RW": (MacroObject("class_attr_{0}", "struct class_attribute {name}"),),
    "CLASS_ATTR_RO": (MacroObject("class_attr_{0}", "struct class_attribute {name}"),),
    "CLASS_ATTR_WO": (MacroObject("class_attr_{0}", "struct class_attribute {name}"),),
    "BUS_ATTR_RW": (MacroObject("bus_attr_{0}", "struct bus_attribute {name}"),),
    "BUS_ATTR_RO": (MacroObject("bus_attr_{0}", "struct bus_attribute {name}"),),
    "BUS_ATTR_WO": (MacroObject("bus_attr_{0}", "struct bus_attribute {name}"),),
}


def macro_objects(macro: str, args: list[str]) -> list[tuple[str, str, ObjectKind]]:
    """(name, declaration, kind) of each object `macro(args)` defines; [] when it is unknown."""
    out = []
    for obj in DEFINING_MACROS.get(macro, ()):
        try:
            declarator = obj.name.format(*args)
        except IndexError:
            continue
        # `DEFINE_PER_CPU(struct timer_base, timer_bases[NR_BASES])`: the name argument is a
        # declarator; the object's name is its identifier.
        found = _IDENT.match(declarator.strip())
        if found is None:
            continue
        name = found.group()
        decl = obj.declaration.format(*args, name=declarator if obj.name == "{0}" else name)
        out.append((name, decl, obj.kind))
    return out


_IDENT = re.compile(r"[A-Za-z_]\w*")
