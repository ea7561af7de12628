use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! relation_field {
    ($(#[$doc:meta])* $name:ident, $loaded:ty, $sample:expr) => {
        $(#[$doc])*
        ///
        /// A row read from the database has its relations not loaded; loading fills them.
        /// Not loaded is never the same as empty: [`get`](Self::get) tells them apart, and
        /// serde writes `null` for not loaded (and, for a `HasOne`, for loaded without a child
        /// too: read back, that is not loaded).
        #[derive(Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name<T>(Option<$loaded>);

        impl<T> $name<T> {
            /// The relation, not loaded.
            ///
            /// ```
            #[doc = concat!("use datastore::relations::", stringify!($name), ";")]
            ///
            #[doc = concat!("let relation: ", stringify!($name), "<i32> = ", stringify!($name), "::not_loaded();")]
            /// assert!(!relation.is_loaded());
            #[doc = concat!("assert_eq!(relation, ", stringify!($name), "::default());")]
            /// ```
            pub const fn not_loaded() -> Self {
                Self(None)
            }

            /// The relation, loaded with these rows.
            ///
            /// ```
            #[doc = concat!("use datastore::relations::", stringify!($name), ";")]
            ///
            #[doc = concat!("let relation = ", stringify!($name), "::loaded(", stringify!($sample), ");")]
            /// assert!(relation.is_loaded());
            /// ```
            pub const fn loaded(value: $loaded) -> Self {
                Self(Some(value))
            }

            /// Whether the relation was loaded.
            ///
            /// ```
            #[doc = concat!("use datastore::relations::", stringify!($name), ";")]
            ///
            #[doc = concat!("assert!(", stringify!($name), "::loaded(", stringify!($sample), ").is_loaded());")]
            #[doc = concat!("assert!(!", stringify!($name), "::<i32>::not_loaded().is_loaded());")]
            /// ```
            pub const fn is_loaded(&self) -> bool {
                self.0.is_some()
            }

            /// The loaded value, or `None` if the relation was not loaded.
            ///
            /// ```
            #[doc = concat!("use datastore::relations::", stringify!($name), ";")]
            ///
            #[doc = concat!("assert_eq!(", stringify!($name), "::loaded(", stringify!($sample), ").into_loaded(), Some(", stringify!($sample), "));")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::<i32>::not_loaded().into_loaded(), None);")]
            /// ```
            pub fn into_loaded(self) -> Option<$loaded> {
                self.0
            }

            /// The loaded value, mutably (to load a nested relation into it), or `None` if the
            /// relation was not loaded.
            ///
            /// ```
            #[doc = concat!("use datastore::relations::", stringify!($name), ";")]
            ///
            #[doc = concat!("let mut relation = ", stringify!($name), "::loaded(", stringify!($sample), ");")]
            /// if let Some(value) = relation.get_mut() {
            ///     *value = Default::default();
            /// }
            /// assert_eq!(relation.into_loaded(), Some(Default::default()));
            #[doc = concat!("assert_eq!(", stringify!($name), "::<i32>::not_loaded().get_mut(), None);")]
            /// ```
            pub fn get_mut(&mut self) -> Option<&mut $loaded> {
                self.0.as_mut()
            }

            /// Takes `other`'s value if this relation is not loaded.
            #[doc(hidden)]
            pub fn fill_from(&mut self, other: Self) {
                if self.0.is_none() {
                    self.0 = other.0;
                }
            }
        }

        impl<T> Default for $name<T> {
            fn default() -> Self {
                Self::not_loaded()
            }
        }

        impl<T: fmt::Debug> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match &self.0 {
                    Some(value) => value.fmt(f),
                    None => f.write_str("<not loaded>"),
                }
            }
        }
    };
}

relation_field!(
    /// The children of a `#[has_many(T)]` field.
    ///
    /// ```
    /// use datastore::relations::HasMany;
    ///
    /// let comments: HasMany<String> = HasMany::default();
    /// assert_eq!(comments.get(), None);
    /// assert_eq!(HasMany::loaded(vec!["hi".to_string()]).get().unwrap().len(), 1);
    /// ```
    HasMany, Vec<T>, vec![1, 2]
);
relation_field!(
    /// The rows linked through the join model of a `#[many_to_many(T, through = J)]` field.
    ///
    /// ```
    /// use datastore::relations::ManyToMany;
    ///
    /// let editors: ManyToMany<String> = ManyToMany::loaded(vec![]);
    /// assert_eq!(editors.get(), Some(&[][..])); // loaded, and empty
    /// ```
    ManyToMany, Vec<T>, vec![1, 2]
);
relation_field!(
    /// The child of a `#[has_one(T)]` field: loaded as `Some(child)` or `None` when there is
    /// no child.
    ///
    /// ```
    /// use datastore::relations::HasOne;
    ///
    /// let profile: HasOne<String> = HasOne::loaded(None);
    /// assert_eq!(profile.get(), Some(None)); // loaded: there is no profile
    /// ```
    HasOne, Option<T>, Some(1)
);

impl<T> HasMany<T> {
    /// The children, or `None` if the relation was not loaded.
    ///
    /// ```
    /// use datastore::relations::HasMany;
    ///
    /// assert_eq!(HasMany::loaded(vec![1, 2]).get(), Some(&[1, 2][..]));
    /// assert_eq!(HasMany::<i32>::not_loaded().get(), None); // not the same as empty
    /// ```
    pub fn get(&self) -> Option<&[T]> {
        self.0.as_deref()
    }
}

impl<T> ManyToMany<T> {
    /// The linked rows, or `None` if the relation was not loaded.
    ///
    /// ```
    /// use datastore::relations::ManyToMany;
    ///
    /// assert_eq!(ManyToMany::loaded(vec!["ada"]).get(), Some(&["ada"][..]));
    /// assert_eq!(ManyToMany::<&str>::not_loaded().get(), None);
    /// ```
    pub fn get(&self) -> Option<&[T]> {
        self.0.as_deref()
    }
}

impl<T> HasOne<T> {
    /// `Some(child)` (which is `None` when there is no child), or `None` if the relation was
    /// not loaded.
    ///
    /// ```
    /// use datastore::relations::HasOne;
    ///
    /// assert_eq!(HasOne::loaded(Some("bio")).get(), Some(Some(&"bio")));
    /// assert_eq!(HasOne::<&str>::loaded(None).get(), Some(None)); // loaded: there is none
    /// assert_eq!(HasOne::<&str>::not_loaded().get(), None);
    /// ```
    pub fn get(&self) -> Option<Option<&T>> {
        self.0.as_ref().map(Option::as_ref)
    }
}
