//! Compiled transforms: JSON field access, topic templates, expressions, map.
