"""Writing livepatch modules: module source from a patch and the index, kbuild, klp relocations."""
