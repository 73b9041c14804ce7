"""Where tokens live: point clouds on S^1, S^2 and R^d (:mod:`.measures`), the finite-volume
meshes of the circle and the sphere (:mod:`.meshes`, their files in :mod:`.mesh_files`), and the
initial measures a case starts from (:mod:`.initial`)."""
