//! The world the generator draws from: countries, retailers, products.
//!
//! Everything here is fictional but shaped like the real thing (formats, tax rules, price levels),
//! so a model that learns the synthetic task meets familiar structure on real receipts. Entries
//! carry a `since` year: that is how a later period gets retailers and products an earlier one
//! never showed, which makes "train on one year, test on the next" a real generalisation test.

use serde::{Deserialize, Serialize};

/// Where a receipt was printed: decides address, postcode, phone, money and tax formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Country {
    #[serde(rename = "US")]
    Us,
    #[serde(rename = "CA")]
    Ca,
    #[serde(rename = "GB")]
    Gb,
    #[serde(rename = "DE")]
    De,
    #[serde(rename = "MY")]
    My,
    #[serde(rename = "AU")]
    Au,
}

impl Country {
    pub const ALL: [Country; 6] = [
        Country::Us,
        Country::Ca,
        Country::Gb,
        Country::De,
        Country::My,
        Country::Au,
    ];

    /// ISO 3166-1 alpha-2, as written in the truth.
    pub fn code(self) -> &'static str {
        match self {
            Country::Us => "US",
            Country::Ca => "CA",
            Country::Gb => "GB",
            Country::De => "DE",
            Country::My => "MY",
            Country::Au => "AU",
        }
    }

    /// ISO 4217 currency code, as written in the truth.
    pub fn currency(self) -> &'static str {
        match self {
            Country::Us => "USD",
            Country::Ca => "CAD",
            Country::Gb => "GBP",
            Country::De => "EUR",
            Country::My => "MYR",
            Country::Au => "AUD",
        }
    }

    /// Parses "US", "gb", "uk", … (for the CLI).
    pub fn parse(s: &str) -> Option<Country> {
        match s.to_ascii_uppercase().as_str() {
            "US" | "USA" => Some(Country::Us),
            "CA" | "CAN" => Some(Country::Ca),
            "GB" | "UK" => Some(Country::Gb),
            "DE" | "DEU" => Some(Country::De),
            "MY" | "MYS" => Some(Country::My),
            "AU" | "AUS" => Some(Country::Au),
            _ => None,
        }
    }

    /// Price level relative to the base prices below (which are in US dollars).
    pub(crate) fn price_factor(self) -> f64 {
        match self {
            Country::Us => 1.0,
            Country::Ca => 1.3,
            Country::Gb => 0.85,
            Country::De => 0.95,
            Country::My => 3.2,
            Country::Au => 1.45,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    Grocery,
    Pharmacy,
    Hardware,
    Cafe,
    Fuel,
    Restaurant,
    Electronics,
    Books,
    Convenience,
}

pub(crate) struct Retailer {
    pub name: &'static str,
    pub category: Category,
    pub countries: &'static [Country],
    /// First year the retailer prints receipts.
    pub since: u16,
}

use Category::*;
use Country::*;

const fn r(
    name: &'static str,
    category: Category,
    countries: &'static [Country],
    since: u16,
) -> Retailer {
    Retailer {
        name,
        category,
        countries,
        since,
    }
}

pub(crate) static RETAILERS: &[Retailer] = &[
    r("FreshWay Grocers", Grocery, &[Us, Ca], 0),
    r("Greenfield Foods", Grocery, &[Us], 0),
    r("Maple Leaf Market", Grocery, &[Ca], 0),
    r("Harbour Fresh", Grocery, &[Au, Gb], 0),
    r("Corner Larder", Grocery, &[Gb], 0),
    r("Frischmarkt Müller", Grocery, &[De], 0),
    r("BioHof Laden", Grocery, &[De], 0),
    r("Pasar Mini Jaya", Grocery, &[My], 0),
    r("Kedai Runcit Sri Murni", Grocery, &[My], 0),
    r("Daily Basket", Grocery, &[Us, Au, Gb], 2020),
    r("CarePlus Pharmacy", Pharmacy, &[Us, Ca], 0),
    r("Wellspring Chemist", Pharmacy, &[Gb, Au], 0),
    r("Apotheke am Markt", Pharmacy, &[De], 0),
    r("Farmasi Sihat", Pharmacy, &[My], 0),
    r("HealthHub Rx", Pharmacy, &[Us], 2020),
    r("Ironwood Hardware", Hardware, &[Us, Ca], 0),
    r("Bolt & Nut Supply", Hardware, &[Gb, Au], 0),
    r("Baumarkt Schneider", Hardware, &[De], 0),
    r("Syarikat Hardware Lim Sdn Bhd", Hardware, &[My], 0),
    r("Kedai Perkakasan Teguh", Hardware, &[My], 0),
    r("ToolBarn", Hardware, &[Us, Ca], 2020),
    r("Bean There Cafe", Cafe, &[Us, Gb, Au], 0),
    r("The Daily Grind", Cafe, &[Ca, Us], 0),
    r("Kopitiam Ah Seng", Cafe, &[My], 0),
    r("Café Sonnenschein", Cafe, &[De], 0),
    r("Flat White Co.", Cafe, &[Au, Gb], 2020),
    r("Oat & Crema", Cafe, &[Us, De], 2021),
    r("PetroStar", Fuel, &[Us, Ca], 0),
    r("Roadside Fuel", Fuel, &[Gb, Au], 0),
    r("Tankstelle Nord", Fuel, &[De], 0),
    r("Stesen Minyak Sinar", Fuel, &[My], 0),
    r("VoltCharge", Fuel, &[Us, Gb, De], 2021),
    r("Golden Dragon Restaurant", Restaurant, &[Us, Ca, Au, Gb], 0),
    r("Pizzeria Bella Napoli", Restaurant, &[Us, Gb, De, Au], 0),
    r("Gasthaus zur Linde", Restaurant, &[De], 0),
    r("Restoran Nasi Kandar Pelita Emas", Restaurant, &[My], 0),
    r("Taco Loco", Restaurant, &[Us, Ca], 2020),
    r("ByteMart Electronics", Electronics, &[Us, Ca, Gb, Au], 0),
    r("Elektro Blitz", Electronics, &[De], 0),
    r("Digital Galaxy", Electronics, &[My], 0),
    r("Pageturner Books", Books, &[Us, Gb, Ca, Au], 0),
    r("Buchhandlung Fuchs", Books, &[De], 0),
    r("Kedai Alat Tulis Cemerlang", Books, &[My], 0),
    r("QuickStop", Convenience, &[Us, Ca], 0),
    r("Late Shop", Convenience, &[Gb, Au], 0),
    r("Mini Mart 24", Convenience, &[My], 0),
    r("Späti Ecke", Convenience, &[De], 2020),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Each,
    Kg,
    Litre,
    Kwh,
}

pub(crate) struct Product {
    pub name: &'static str,
    /// German name, when German receipts would print one.
    pub de: Option<&'static str>,
    /// Base price in US cents (per unit for weighed/metered products).
    pub cents: u32,
    pub unit: Unit,
    /// Food: the reduced VAT class (7% DE, zero-rated GB/AU).
    pub food: bool,
    pub since: u16,
}

impl Product {
    /// Local dishes stay local: no teh tarik in a Berlin café.
    pub fn sold_in(&self, c: Country) -> bool {
        const MY_ONLY: &[&str] = &[
            "Teh Tarik",
            "Kaya Toast",
            "Nasi Lemak Ayam",
            "Roti Canai",
            "Teh O Ais",
        ];
        match c {
            De => self.de.is_some(),
            My => true,
            _ => !MY_ONLY.contains(&self.name),
        }
    }
}

const fn p(name: &'static str, de: Option<&'static str>, cents: u32, food: bool) -> Product {
    Product {
        name,
        de,
        cents,
        unit: Unit::Each,
        food,
        since: 0,
    }
}
const fn w(name: &'static str, de: Option<&'static str>, cents: u32, unit: Unit) -> Product {
    Product {
        name,
        de,
        cents,
        unit,
        food: !matches!(unit, Unit::Litre | Unit::Kwh),
        since: 0,
    }
}
const fn new(mut prod: Product, since: u16) -> Product {
    prod.since = since;
    prod
}

pub(crate) fn products(c: Category) -> &'static [Product] {
    match c {
        Grocery => GROCERY,
        Pharmacy => PHARMACY,
        Hardware => HARDWARE,
        Cafe => CAFE,
        Fuel => FUEL,
        Restaurant => RESTAURANT,
        Electronics => ELECTRONICS,
        Books => BOOKS,
        Convenience => CONVENIENCE,
    }
}

static GROCERY: &[Product] = &[
    p("Milk 2% 1L", Some("Vollmilch 1L"), 149, true),
    p("Whole Wheat Bread", Some("Vollkornbrot"), 299, true),
    w("Bananas", Some("Bananen"), 169, Unit::Kg),
    w("Gala Apples", Some("Äpfel Gala"), 399, Unit::Kg),
    w("Chicken Breast", Some("Hähnchenbrust"), 899, Unit::Kg),
    w("Tomatoes Vine", Some("Rispentomaten"), 449, Unit::Kg),
    p("Eggs Large 12pk", Some("Eier Freiland 10St"), 349, true),
    p("Cheddar Cheese 200g", Some("Gouda jung 200g"), 449, true),
    p("Basmati Rice 2kg", Some("Basmati Reis 1kg"), 499, true),
    p("Spaghetti 500g", Some("Spaghetti 500g"), 179, true),
    p("Tomato Sauce", Some("Tomatensauce"), 249, true),
    p("Orange Juice 1L", Some("Orangensaft 1L"), 329, true),
    p("Coffee Beans 500g", Some("Kaffee Bohnen 500g"), 1199, true),
    p("Greek Yogurt 500g", Some("Joghurt griech. 500g"), 429, true),
    p("Butter 250g", Some("Butter 250g"), 399, true),
    p("Rolled Oats 1kg", Some("Haferflocken 500g"), 349, true),
    p(
        "Sparkling Water 6pk",
        Some("Mineralwasser 6x1,5L"),
        449,
        true,
    ),
    p("Paper Towels 6pk", Some("Küchenrolle 4er"), 899, false),
    p("Dish Soap", Some("Spülmittel"), 299, false),
    p("Laundry Detergent", Some("Waschmittel"), 1299, false),
    w("Carrots", Some("Karotten"), 219, Unit::Kg),
    p("Peanut Butter", Some("Erdnussbutter"), 389, true),
    new(p("Oat Milk 1L", Some("Haferdrink 1L"), 289, true), 2020),
    new(
        p("Plant Burger 2pk", Some("Veggie Burger 2St"), 549, true),
        2020,
    ),
    new(
        p("Kombucha Ginger", Some("Kombucha Ingwer"), 379, true),
        2021,
    ),
];

static PHARMACY: &[Product] = &[
    p(
        "Ibuprofen 200mg 24ct",
        Some("Ibuprofen 400mg 20St"),
        699,
        false,
    ),
    p("Paracetamol 500mg", Some("Paracetamol 500mg"), 449, false),
    p("Vitamin C 1000mg", Some("Vitamin C 1000"), 999, false),
    p("Cough Syrup 150ml", Some("Hustensaft 100ml"), 1149, false),
    p("Toothpaste Mint", Some("Zahnpasta"), 349, false),
    p("Shampoo 400ml", Some("Shampoo 300ml"), 599, false),
    p("Sunscreen SPF50", Some("Sonnencreme LSF50"), 1399, false),
    p("Plasters 20pk", Some("Pflaster 20St"), 399, false),
    p("Hand Cream", Some("Handcreme"), 499, false),
    p(
        "Allergy Relief 10ct",
        Some("Allergietabletten"),
        1099,
        false,
    ),
    new(
        p("Face Masks 10pk", Some("FFP2 Masken 10St"), 1299, false),
        2020,
    ),
    new(
        p("Hand Sanitiser 500ml", Some("Desinfektionsgel"), 699, false),
        2020,
    ),
    new(
        p(
            "Rapid Antigen Test",
            Some("Antigen Schnelltest"),
            1199,
            false,
        ),
        2021,
    ),
];

static HARDWARE: &[Product] = &[
    p(
        "Wood Screws 4x40 100pc",
        Some("Holzschrauben 4x40"),
        799,
        false,
    ),
    p("Steel Nails 2in 1lb", Some("Stahlnägel 50mm"), 549, false),
    p("Claw Hammer 16oz", Some("Klauenhammer"), 1999, false),
    p("Masking Tape 24mm", Some("Malerkrepp 30mm"), 399, false),
    p("Paint Roller 9in", Some("Farbroller 25cm"), 899, false),
    p(
        "Interior Paint 1gal",
        Some("Wandfarbe weiss 5L"),
        3499,
        false,
    ),
    p("PVC Pipe 1/2in 10ft", Some("PVC Rohr 20mm"), 649, false),
    p("Cable Ties 100pk", Some("Kabelbinder 100St"), 499, false),
    p("LED Bulb 9W", Some("LED Lampe E27 9W"), 449, false),
    p("Work Gloves", Some("Arbeitshandschuhe"), 1099, false),
    p("Sandpaper Assorted", Some("Schleifpapier Set"), 699, false),
    p(
        "Extension Cord 3m",
        Some("Verlängerungskabel 3m"),
        1499,
        false,
    ),
    new(p("Smart Plug", Some("WLAN Steckdose"), 1999, false), 2020),
    new(
        p("Solar Garden Light", Some("Solarleuchte"), 1299, false),
        2021,
    ),
];

static CAFE: &[Product] = &[
    p("Flat White", Some("Flat White"), 425, true),
    p("Cappuccino", Some("Cappuccino"), 450, true),
    p("Latte Regular", Some("Latte Macchiato"), 475, true),
    p("Espresso", Some("Espresso"), 275, true),
    p("Iced Americano", Some("Eiskaffee"), 395, true),
    p("Croissant", Some("Croissant"), 325, true),
    p("Blueberry Muffin", Some("Muffin Blaubeere"), 350, true),
    p("Banana Bread", Some("Bananenbrot"), 395, true),
    p("Ham Cheese Toastie", Some("Toast Schinken Käse"), 725, true),
    p("Teh Tarik", None, 120, true),
    p("Kaya Toast", None, 180, true),
    p("Hot Chocolate", Some("Heiße Schokolade"), 425, true),
    new(p("Oat Latte", Some("Hafer Latte"), 525, true), 2020),
    new(p("Matcha Latte", Some("Matcha Latte"), 550, true), 2020),
    new(p("Cold Brew", Some("Cold Brew"), 495, true), 2021),
];

static FUEL: &[Product] = &[
    w("Unleaded 95", Some("Super E5"), 119, Unit::Litre),
    w("Unleaded 91", Some("Super E10"), 109, Unit::Litre),
    w("Diesel", Some("Diesel"), 115, Unit::Litre),
    p("Car Wash Deluxe", Some("Waschstraße Premium"), 1299, false),
    p("Windscreen Fluid", Some("Scheibenreiniger"), 599, false),
    p("Energy Drink", Some("Energy Drink"), 299, true),
    p("Beef Jerky", Some("Beef Jerky"), 649, true),
    p("Bottled Water 600ml", Some("Wasser 0,5L"), 199, true),
    new(w("EV Charging", Some("Ladestrom"), 45, Unit::Kwh), 2020),
];

static RESTAURANT: &[Product] = &[
    p("Fried Rice", Some("Gebratener Reis"), 1095, true),
    p("Kung Pao Chicken", Some("Kung Pao Huhn"), 1495, true),
    p("Margherita Pizza", Some("Pizza Margherita"), 1350, true),
    p(
        "Spaghetti Carbonara",
        Some("Spaghetti Carbonara"),
        1450,
        true,
    ),
    p("Schnitzel w Fries", Some("Wiener Schnitzel"), 1690, true),
    p("Caesar Salad", Some("Caesar Salat"), 1150, true),
    p("Nasi Lemak Ayam", None, 350, true),
    p("Roti Canai", None, 80, true),
    p("Teh O Ais", None, 90, true),
    p("Soft Drink", Some("Cola 0,4L"), 325, true),
    p("House Red Glass", Some("Hauswein rot 0,2L"), 895, false),
    p("Draft Beer", Some("Pils 0,5L"), 750, false),
    p("Tiramisu", Some("Tiramisu"), 795, true),
    new(p("Birria Tacos", None, 1395, true), 2020),
    new(p("Vegan Bowl", Some("Vegane Bowl"), 1295, true), 2021),
];

static ELECTRONICS: &[Product] = &[
    p("USB-C Cable 1m", Some("USB-C Kabel 1m"), 1299, false),
    p("Wireless Mouse", Some("Funkmaus"), 2499, false),
    p("AA Batteries 8pk", Some("Batterien AA 8St"), 899, false),
    p("HDMI Cable 2m", Some("HDMI Kabel 2m"), 1499, false),
    p("Earbuds Wired", Some("Kopfhörer"), 1999, false),
    p("Phone Case", Some("Handyhülle"), 1999, false),
    p("Screen Protector", Some("Schutzglas"), 1299, false),
    p("Power Bank 10000mAh", Some("Powerbank 10000"), 3499, false),
    p("SD Card 64GB", Some("SD Karte 64GB"), 1799, false),
    p("Wall Charger 20W", Some("Ladegerät 20W"), 2499, false),
    new(p("Webcam 1080p", Some("Webcam 1080p"), 5999, false), 2020),
    new(
        p("Smart Watch Band", Some("Smartwatch Armband"), 2499, false),
        2021,
    ),
];

static BOOKS: &[Product] = &[
    p("Paperback Novel", Some("Taschenbuch Roman"), 1699, false),
    p("A5 Notebook Ruled", Some("Notizbuch A5"), 499, false),
    p(
        "Ballpoint Pens 10pk",
        Some("Kugelschreiber 10er"),
        599,
        false,
    ),
    p("Greeting Card", Some("Grußkarte"), 399, false),
    p("Highlighters 4pk", Some("Textmarker 4er"), 549, false),
    p("Cookbook Hardcover", Some("Kochbuch"), 2999, false),
    p("Children's Picture Book", Some("Bilderbuch"), 1299, false),
    p("Wrapping Paper", Some("Geschenkpapier"), 399, false),
    p("Puzzle 1000pc", Some("Puzzle 1000 Teile"), 1999, false),
    new(
        p("Colouring Book Adult", Some("Malbuch"), 1199, false),
        2020,
    ),
];

static CONVENIENCE: &[Product] = &[
    p("Cola 600ml", Some("Cola 0,5L"), 249, true),
    p("Potato Chips", Some("Chips Paprika"), 299, true),
    p("Chocolate Bar", Some("Schokoriegel"), 179, true),
    p("Chewing Gum", Some("Kaugummi"), 149, true),
    p("Instant Noodles", Some("Instant Nudeln"), 129, true),
    p("Sandwich Ham", Some("Sandwich Schinken"), 499, true),
    p("Lighter", Some("Feuerzeug"), 199, false),
    p("Newspaper", Some("Zeitung"), 250, false),
    p("Ice Cream Cone", Some("Eis Hörnchen"), 299, true),
    p("Phone Top-Up", Some("Handy Guthaben"), 1000, false),
    new(p("Hard Seltzer", Some("Hard Seltzer"), 349, false), 2020),
];

/// (city, region) pairs per country; the region is a state/province code where one is printed.
pub(crate) fn cities(c: Country) -> &'static [(&'static str, &'static str)] {
    match c {
        Us => &[
            ("Springfield", "IL"),
            ("Austin", "TX"),
            ("Portland", "OR"),
            ("Seattle", "WA"),
            ("Albany", "NY"),
            ("Fresno", "CA"),
            ("Denver", "CO"),
        ],
        Ca => &[
            ("Toronto", "ON"),
            ("Ottawa", "ON"),
            ("Vancouver", "BC"),
            ("Victoria", "BC"),
            ("Montreal", "QC"),
            ("Laval", "QC"),
        ],
        Gb => &[
            ("London", ""),
            ("Manchester", ""),
            ("Oxford", ""),
            ("Leeds", ""),
            ("Bristol", ""),
            ("Edinburgh", ""),
        ],
        De => &[
            ("Berlin", ""),
            ("Hamburg", ""),
            ("München", ""),
            ("Köln", ""),
            ("Leipzig", ""),
            ("Freiburg", ""),
        ],
        My => &[
            ("Kuala Lumpur", "Wilayah Persekutuan"),
            ("Petaling Jaya", "Selangor"),
            ("Shah Alam", "Selangor"),
            ("Johor Bahru", "Johor"),
            ("Georgetown", "Pulau Pinang"),
            ("Ipoh", "Perak"),
        ],
        Au => &[
            ("Sydney", "NSW"),
            ("Melbourne", "VIC"),
            ("Brisbane", "QLD"),
            ("Perth", "WA"),
            ("Adelaide", "SA"),
            ("Hobart", "TAS"),
        ],
    }
}

pub(crate) fn streets(c: Country) -> &'static [&'static str] {
    match c {
        Us | Ca | Au => &[
            "Main St",
            "Oak Ave",
            "Maple Dr",
            "Elm Street",
            "Market St",
            "King Road",
            "Lakeview Blvd",
            "Station Rd",
            "Park Avenue",
            "Queen Street",
        ],
        Gb => &[
            "High Street",
            "Church Road",
            "Station Road",
            "Victoria Road",
            "Mill Lane",
            "London Road",
            "Market Place",
        ],
        De => &[
            "Hauptstraße",
            "Bahnhofstr.",
            "Schulstraße",
            "Gartenweg",
            "Marktplatz",
            "Lindenallee",
            "Bergstraße",
        ],
        My => &[
            "Jalan Ampang",
            "Jalan Bukit Bintang",
            "Jalan SS 2/24",
            "Jalan Tun Razak",
            "Jalan Kenari 5",
            "Jalan Perdana 3",
            "Lorong Maarof",
        ],
    }
}

pub(crate) static CASHIERS: &[&str] = &[
    "MARIA", "JOHN", "AISHA", "WEI LING", "KEVIN", "SOPHIE", "RAJ", "LENA", "TOM", "NURUL", "02",
    "105", "SITI", "JAMES",
];
