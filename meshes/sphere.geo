// Unit sphere surface as eight octant patches (the construction of FiPy's
// examples/cahnHilliard/sphere.py), meshed with triangles of size lc.
//
// Built by vlasov_tf.geometry.mesh_files.build_sphere_mesh (`vlasov-tf mesh --level K`),
// which prepends `lc = <value>;` (level K: lc = 0.18 / 2^K). By hand:
//     gmsh sphere.geo -2 -setnumber lc 0.09 -format msh2 -smooth 8 -o sphere.msh
//
// Why octants and not OpenCASCADE's Sphere(): its single patch has two
// degenerate poles, where Frontal-Delaunay leaves small triangles (min/max
// cell area 0.08 at ~2e4 cells against 0.34 here). The octant edges are great
// circles, so gmsh's coherence merges the shared points and curves of the
// rotated copies and the mesh is conforming across patches.

DefineConstant[ lc = 0.18 ];
Mesh.Algorithm = 6;  // Frontal-Delaunay: the most uniform of gmsh's 2D algorithms here

Point(1) = {0, 0, 0, lc};
Point(2) = {-1, 0, 0, lc};
Point(3) = {0, 1, 0, lc};
Point(4) = {0, 0, 1, lc};
Circle(1) = {2, 1, 3};
Circle(2) = {4, 1, 2};
Circle(3) = {4, 1, 3};
Line Loop(1) = {1, -3, 2};
Ruled Surface(1) = {1};

t1[] = Rotate {{0, 0, 1}, {0, 0, 0}, Pi/2} {Duplicata{Surface{1};}};
t2[] = Rotate {{0, 0, 1}, {0, 0, 0}, Pi} {Duplicata{Surface{1};}};
t3[] = Rotate {{0, 0, 1}, {0, 0, 0}, Pi*3/2} {Duplicata{Surface{1};}};
t4[] = Rotate {{0, 1, 0}, {0, 0, 0}, -Pi/2} {Duplicata{Surface{1};}};
t5[] = Rotate {{0, 0, 1}, {0, 0, 0}, Pi/2} {Duplicata{Surface{t4[0]};}};
t6[] = Rotate {{0, 0, 1}, {0, 0, 0}, Pi} {Duplicata{Surface{t4[0]};}};
t7[] = Rotate {{0, 0, 1}, {0, 0, 0}, Pi*3/2} {Duplicata{Surface{t4[0]};}};

Surface Loop(100) = {1, t1[0], t2[0], t3[0], t7[0], t4[0], t5[0], t6[0]};
