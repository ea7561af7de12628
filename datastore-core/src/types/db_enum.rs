/// A fieldless enum stored as text: the variant's name, constrained by a `CHECK` to the
/// declared variants. Derive it with `#[derive(DbEnum)]`.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq)]
/// pub enum PostStatus {
///     Active,
///     Inactive,
/// }
///
/// assert_eq!(PostStatus::VARIANTS, &["Active", "Inactive"]);
/// assert_eq!(PostStatus::Inactive.as_str(), "Inactive");
/// assert_eq!(PostStatus::from_name("Active"), Some(PostStatus::Active));
/// assert_eq!(PostStatus::from_name("active"), None);
/// ```
pub trait DbEnum: Sized + Copy + 'static {
    /// The stored names, in declaration order: the values its column's `CHECK` accepts.
    ///
    /// ```
    /// use datastore::prelude::*;
    ///
    /// #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
    /// pub enum Size {
    ///     #[default]
    ///     Small,
    ///     #[db_enum(rename = "L")]
    ///     Large,
    /// }
    /// assert_eq!(Size::VARIANTS, ["Small", "L"]);
    /// ```
    const VARIANTS: &'static [&'static str];

    /// The stored name of this variant.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
    /// # pub enum PostStatus { #[default] Active, Inactive }
    /// assert_eq!(PostStatus::Inactive.as_str(), "Inactive");
    /// ```
    fn as_str(&self) -> &'static str;

    /// The variant stored under this name.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
    /// # pub enum PostStatus { #[default] Active, Inactive }
    /// assert_eq!(PostStatus::from_name("Inactive"), Some(PostStatus::Inactive));
    /// assert_eq!(PostStatus::from_name("Archived"), None);
    /// ```
    fn from_name(name: &str) -> Option<Self>;
}
