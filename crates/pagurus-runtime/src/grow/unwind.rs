//! Placeholder: the DWARF frame walker is being written.
